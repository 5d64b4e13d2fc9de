"""Lazy attributes of a package (PEP 562), so ``import sclens`` does not load torch, matplotlib or scipy.stats."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, where: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a ``__getattr__`` and ``__dir__`` for ``package`` that import ``where``'s names on first use.

    ``where[name]`` is the module (relative to ``package``, e.g. ``"._fit"``) that defines ``name``, or
    ``""`` when ``name`` is a subpackage of ``package``. The value is then stored on the package, so later
    lookups are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        if name not in where:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = (
            getattr(import_module(where[name], package), name) if where[name] else import_module(f".{name}", package)
        )
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
