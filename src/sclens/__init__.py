"""sclens: make single-cell model embeddings interpretable with sparse autoencoders."""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from ._lazy import lazy_attributes
from ._settings import settings

if TYPE_CHECKING:
    from . import datasets, get, pl, sim, tl

# the namespaces are imported on first use (`sl.tl`), so `import sclens` and `sclens --help` start fast
__getattr__, __dir__ = lazy_attributes(__name__, dict.fromkeys(["datasets", "get", "pl", "sim", "tl"], ""))

try:
    __version__ = version("sclens")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["datasets", "get", "pl", "settings", "sim", "tl"]
