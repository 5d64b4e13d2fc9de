"""Package-wide settings and the ``sclens`` logger."""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("sclens")
# like scanpy: messages at or above `settings.verbosity` reach stderr without configuring the root logger
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("sclens %(levelname)s: %(message)s"))
logger.addHandler(_handler)

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


class SclensSettings:
    """Global settings: ``sclens.settings.verbosity = 2`` etc.

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings (default), 2 info and progress bars, 3 debug.
    seed
        Default random seed used when a function's ``random_state`` is ``None``.
    device
        Torch device for SAE training and encoding (``"cpu"``, ``"cuda"``, ``"auto"``).
    n_jobs
        Default number of worker processes/threads; ``-1`` means all cores.
    """

    def __init__(self) -> None:
        self._verbosity = 1
        self.seed = 0
        self._device = "cpu"
        self._n_jobs = 1
        self.verbosity = 1

    @property
    def verbosity(self) -> int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        if value not in _LEVELS:
            msg = f"verbosity must be one of {sorted(_LEVELS)}, got {value!r}."
            raise ValueError(msg)
        self._verbosity = value
        logger.setLevel(_LEVELS[value])

    @property
    def progress(self) -> bool:
        """Whether progress bars are shown (verbosity >= 2)."""
        return self._verbosity >= 2

    @property
    def device(self) -> str:
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        self._device = _torch_device(value)

    @property
    def n_jobs(self) -> int:
        return self._n_jobs

    @n_jobs.setter
    def n_jobs(self, value: int) -> None:
        self._n_jobs = resolve_n_jobs(value)

    def __repr__(self) -> str:
        return (
            f"SclensSettings(verbosity={self.verbosity}, seed={self.seed}, "
            f"device={self.device!r}, n_jobs={self.n_jobs})"
        )


def resolve_device(device: str | None) -> str:
    """Torch device name from ``device`` or ``settings.device``; ``"auto"``: ``"cuda"`` when available."""
    device = settings.device if device is None else device
    if not isinstance(device, str) or not device:
        msg = f"device must be a string such as 'cpu', 'cuda', 'cuda:1' or 'auto', got {device!r}."
        raise TypeError(msg)
    return _check_available(_torch_device(device))


def _check_available(device: str) -> str:
    """``device`` unchanged when this machine has it; else a ValueError naming ``device`` and what exists."""
    import torch

    kind, _, index = device.partition(":")
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    have = {"cpu": True, "cuda": n_gpus > int(index or 0), "mps": mps}.get(kind, True)
    if not have:
        avail = ["'cpu'", *([f"'cuda:{i}'" for i in range(n_gpus)]), *(["'mps'"] if mps else [])]
        msg = (
            f"device={device!r} (argument `device` or `sclens.settings.device`) is not available on this machine "
            f"(torch {torch.__version__} sees {n_gpus} CUDA GPU(s)); available: {', '.join(avail)}. "
            "Pass device='cpu', or device='auto' to use a GPU only when there is one."
        )
        raise ValueError(msg)
    return device


def _torch_device(device: str) -> str:
    """``device`` checked by torch (imported here, so ``import sclens`` does not load it); ``"auto"``: cuda if any."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as e:
        msg = f"Unknown torch device {device!r}: use 'cpu', 'cuda', 'cuda:0' or 'auto'."
        raise ValueError(msg) from e
    return device


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Turn ``None`` / ``-1`` / a positive int into a number of workers."""
    if n_jobs is None:
        return settings.n_jobs
    if n_jobs == -1:
        return os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs < 1:
        msg = f"n_jobs must be a positive integer or -1 (all cores), got {n_jobs!r}."
        raise ValueError(msg)
    return n_jobs


settings = SclensSettings()
