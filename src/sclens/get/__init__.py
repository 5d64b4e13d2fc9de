"""Accessors: rebuild models and read results from an AnnData."""

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes
from ._coverage import gene_coverage
from ._feature_space import feature_space
from ._results import feature_terms

if TYPE_CHECKING:
    from ._sae import sae

# sl.get.sae returns a torch model: torch is imported when it is first used, not with `sl.get`
__getattr__, __dir__ = lazy_attributes(__name__, {"sae": "._sae"})

__all__ = ["feature_space", "feature_terms", "gene_coverage", "sae"]
