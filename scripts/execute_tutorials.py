"""Execute the tutorials and store them with their outputs, so the docs show their figures.

Each notebook is run top to bottom in a fresh kernel (working directory: a temporary folder;
matplotlib's inline backend, so figures are stored as PNG; one BLAS / OpenMP / torch thread, so that
the printed numbers do not depend on the machine's cores), then written back with its outputs
and ``metadata.sclens.code_hash``: the hash of its code cells. ``tests/test_tutorials.py`` fails
when a committed notebook's code no longer matches that hash (stale outputs) or when a cell lacks
an output that a fresh run produces.

Run from the repository root after changing a tutorial (all of them without arguments):
``python scripts/execute_tutorials.py [tutorials/NAME.ipynb ...]``
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

TUTORIALS = Path(__file__).parents[1] / "tutorials"
VOLATILE_CELL_METADATA = ("execution",)
#: the kernel's thread counts: float sums (and so trained SAEs) depend on how work is split between threads
PINNED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def code_hash(nb: nbformat.NotebookNode) -> str:
    """sha256 of the notebook's code cells (sources in order), the key of its stored outputs."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            h.update(cell.source.strip().encode())
            h.update(b"\0")
    return h.hexdigest()


def execute(nb: nbformat.NotebookNode, *, timeout: int = 1200) -> nbformat.NotebookNode:
    """Run ``nb`` in a fresh python3 kernel in a temporary folder (``nb`` is changed in place)."""
    os.environ.pop("MPLBACKEND", None)  # Agg would draw no figure into the notebook: keep the inline backend
    with tempfile.TemporaryDirectory() as tmp, _environ(PINNED):
        client = nbclient.NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": tmp}}
        )
        client.execute()
    return nb


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """``os.environ`` updated with ``values`` (the kernel inherits it), restored afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def store(path: Path) -> float:
    """Execute the notebook at ``path`` and write it back with outputs and its code hash; seconds taken."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    execute(nb)
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
    nb.metadata["sclens"] = {"code_hash": code_hash(nb)}
    nbformat.validate(nb)
    tmp = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, tmp)
    tmp.replace(path)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every tutorials/*.ipynb")
    args = parser.parse_args(argv)
    for path in args.notebooks or sorted(TUTORIALS.glob("*.ipynb")):
        seconds = store(path)
        print(f"{path}: executed in {seconds:.0f} s, {path.stat().st_size / 1e3:.0f} kB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
