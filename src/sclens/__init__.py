"""sclens: make single-cell model embeddings interpretable with sparse autoencoders."""

from importlib.metadata import PackageNotFoundError, version

from . import datasets, get, pl, sim, tl
from ._settings import settings

try:
    __version__ = version("sclens")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

__all__ = ["datasets", "get", "pl", "settings", "sim", "tl"]
