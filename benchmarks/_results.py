"""Store a benchmark's table with where it came from, so README / docs numbers can cite a file.

Every script calls :func:`save` once with its rows; it writes ``benchmarks/results/<name>.json``
(``benchmark``, ``commit``, ``date``, ``machine``, ``dataset``, ``params``, ``rows``) and the same table
as ``benchmarks/results/<name>.md``, and prints the table. :func:`load` reads a stored result back,
e.g. for a test that checks a number quoted in the docs::

    from _results import save
    save("null_calibration", rows, dataset="toy: 2,000 cells x 1,000 genes, seeds 0-2", params=vars(args))
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def commit() -> str:
    """``git rev-parse HEAD`` of this checkout, ``+dirty`` when tracked files have uncommitted changes."""
    root = Path(__file__).parents[1]

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    head = git("rev-parse", "HEAD") or "unknown"
    return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> dict[str, Any]:
    """CPU, cores, load, memory, Python / torch versions and GPU: what the numbers depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                 if ln.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "system": platform.platform(),
        "load_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }  # fmt: skip
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of ``rows`` (one dict per row, the first row's keys as columns)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])

    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def save(
    name: str,
    rows: Sequence[Mapping[str, Any]],
    *,
    dataset: str | Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    notes: str | None = None,
    directory: Path = RESULTS,
) -> Path:
    """Write ``<directory>/<name>.json`` and ``.md``, print the table, return the JSON path."""
    rows = [dict(r) for r in rows]
    record = {
        "benchmark": name, "commit": commit(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "dataset": dataset, "params": dict(params or {}), "notes": notes, "rows": rows,
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    table = markdown(rows)
    head = f"<!-- {name}: commit {record['commit']}, {record['date']}, {record['machine']['cpu']} -->"
    (directory / f"{name}.md").write_text(f"{head}\n\n{table}\n")
    print(table)
    print(f"stored in {path}")
    return path


def load(name: str, *, directory: Path = RESULTS) -> dict[str, Any]:
    """A stored result (see :func:`save`)."""
    return json.loads((directory / f"{name}.json").read_text())
