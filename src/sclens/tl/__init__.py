"""Tools: fit and apply sparse autoencoders, annotate and analyse their features."""

from ._annotate import annotate_features, contrast
from ._compare import compare_features
from ._feature_space import feature_space
from ._fit import encode, fit_sae
from ._specificity import feature_specificity, seed_robustness
from ._steer import steer

__all__ = [
    "annotate_features",
    "compare_features",
    "contrast",
    "encode",
    "feature_space",
    "feature_specificity",
    "fit_sae",
    "seed_robustness",
    "steer",
]
