"""Tools: fit and apply sparse autoencoders, annotate and analyse their features."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._annotation._annotate import annotate_features, contrast
from ._annotation._redundancy import term_redundancy
from ._compare import compare_features
from ._feature_space import feature_space
from ._specificity import feature_specificity
from ._steering._batch_steer import batch_steer
from ._steering._steer import steer
from ._steering._steer_towards import steer_towards
from ._trust._absorption import feature_absorption
from ._trust._alignment import feature_alignment
from ._trust._baseline import baseline_features
from ._trust._compare_runs import compare_runs
from ._trust._evaluate import evaluate
from ._trust._null import annotation_null
from ._trust._probing import sparse_probing
from ._trust._spurious import spurious_removal
from ._trust._stability import feature_stability

if TYPE_CHECKING:
    from ._fit import encode, fit_sae

# fit_sae / encode need torch: it is imported when they are first used, not with `sl.tl`
__getattr__, __dir__ = lazy_attributes(__name__, {"encode": "._fit", "fit_sae": "._fit"})

__all__ = [
    "annotate_features",
    "annotation_null",
    "baseline_features",
    "batch_steer",
    "compare_features",
    "compare_runs",
    "contrast",
    "encode",
    "evaluate",
    "feature_absorption",
    "feature_alignment",
    "feature_space",
    "feature_specificity",
    "feature_stability",
    "fit_sae",
    "sparse_probing",
    "spurious_removal",
    "steer",
    "steer_towards",
    "term_redundancy",
]
