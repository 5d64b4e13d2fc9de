"""Renamed parameters: old names keep working for one release with a ``FutureWarning``."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def renamed_params(**old_to_new: str) -> Callable[[F], F]:
    """Accept ``old=...`` for ``new=...`` with a ``FutureWarning`` (removed in the next release).

    Examples
    --------
    >>> @renamed_params(key="sae_key")
    ... def f(adata, *, sae_key="sae"): ...
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in old_to_new.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    msg = f"{func.__name__}() got both `{old}` (renamed) and `{new}`; pass only `{new}`."
                    raise TypeError(msg)
                warnings.warn(
                    f"{func.__name__}(): `{old}` was renamed to `{new}`; `{old}` stops working in the next release.",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        wrapper.__renamed_params__ = dict(old_to_new)  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def user_stacklevel(level: int) -> int:
    """``stacklevel`` for ``warnings.warn`` that skips the :func:`renamed_params` wrappers on the way up.

    ``level`` counts as ``warnings.warn`` does from the function calling this one (1: that function,
    2: its caller, ...), but the wrapper frames of renamed parameters are not counted, so a warning
    points at the user's line whether or not the public function is decorated.
    """
    frame, found, remaining = sys._getframe(1), 1, level - 1
    while remaining > 0 and frame.f_back is not None:
        frame, found = frame.f_back, found + 1
        if not (frame.f_code.co_filename == __file__ and frame.f_code.co_name == "wrapper"):
            remaining -= 1
    return found
