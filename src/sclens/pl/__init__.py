"""Plots, each paired with the tool whose output it draws."""

from ._activation import feature_activation
from ._alignment import alignment
from ._atlas import atlas
from ._enrichment import enrichment
from ._evaluation import evaluation
from ._feature_umap import feature_umap
from ._specificity import specificity
from ._steering import steering
from ._sweep import sweep
from ._training import training

__all__ = [
    "alignment",
    "atlas",
    "enrichment",
    "evaluation",
    "feature_activation",
    "feature_umap",
    "specificity",
    "steering",
    "sweep",
    "training",
]
