"""The paper's simulation study: simulate hidden variables and counts, test what SAEs recover."""

from ._autoencoder import fit_autoencoder
from ._connectivity import connectivity_recovery
from ._recovery import recovery
from ._simulate import simulate
from ._superposition import superposition_fit
from ._sweep import sweep

__all__ = ["connectivity_recovery", "fit_autoencoder", "recovery", "simulate", "superposition_fit", "sweep"]
