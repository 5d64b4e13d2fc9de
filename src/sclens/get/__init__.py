"""Accessors: rebuild models and read results from an AnnData."""

from ._coverage import gene_coverage
from ._feature_space import feature_space
from ._results import feature_terms
from ._sae import sae

__all__ = ["feature_space", "feature_terms", "gene_coverage", "sae"]
