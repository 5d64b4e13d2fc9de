"""Reliability counts of issue 23: generated examples run, failures found and fixed, fault scenarios, data lost.

Runs ``tests/test_properties.py`` under each hypothesis profile (``--hypothesis-show-statistics``) and
counts, per public function, the examples drawn that ran to the end (passing or failing; hypothesis's
"invalid" cases, rejected while drawing, and the re-runs that shrink a failure are counted apart) and
the distinct failures found, and runs the fault and untrusted-file tests
(``tests/test_faults.py``, ``tests/test_untrusted.py``, slow ones included): each asserts that the
AnnData, the input file and the old output are unchanged, so every failed fault test counts as a
scenario that lost data. Failures found and fixed come from ``FIXED`` (commits of issue 23).

Run: ``OMP_NUM_THREADS=1 python benchmarks/reliability.py [--profiles ci long]``; stored as
``benchmarks/results/reliability.json`` (the counts), ``reliability_functions`` (examples per public
function and profile) and ``reliability_faults`` (each fault test and its outcome). Each pytest run's
output is kept in ``--log-dir``; ``--reuse-logs`` parses those instead of running again.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _results import save

ROOT = Path(__file__).parents[1]
PROPERTIES = "tests/test_properties.py"
FAULTS = ["tests/test_faults.py", "tests/test_untrusted.py"]

#: failures the generated-input and fault tests found, each fixed in the commit named (issue 23)
FIXED = [
    ("generated inputs", "annotate_features", "float16 dense counts", "8f4227c"),
    ("generated inputs", "baseline_features", "an AnnData without cells", "8f4227c"),
    ("generated inputs", "steer", "an AnnData without cells", "d1d4e91"),
    ("generated inputs", "tl / pl functions", "features=None without a default: RuntimeError", "d1d4e91"),
    ("generated inputs", "pl.alignment", "groupby", "d1d4e91"),
    ("generated inputs", "pl.alignment", "features", "d1d4e91"),
    ("generated inputs", "pl.training", "metrics, also empty", "d1d4e91"),
    ("generated inputs", "annotate_features", "a gene_sets GMT path that does not exist", "d1d4e91"),
    ("generated inputs", "term_redundancy", "gene_sets", "d1d4e91"),
    ("generated inputs (long profile)", "pl.steering", "max_pairs / max_features below 1: numpy's error", "098ea42"),
    ("generated inputs (long profile)", "pl.specificity", "kinds", "098ea42"),
    ("generated inputs (long profile)", "batch_steer", "n_neighbors / max_cells: scikit-learn's errors", "fe6f557"),
    ("generated inputs (long profile)", "feature_absorption", "a coarse column that does not exist", "fe6f557"),
    ("generated inputs (long profile)", "term_redundancy", "made a view actual before its gene_sets error", "fbfaa4d"),
    ("generated inputs (long profile)", "pl.atlas", "a path in a missing folder: error after the work", "b581264"),
    ("generated inputs (long profile)", "annotation_null", "the annotation's layer missing: bare KeyError", "b581264"),
    ("fault tests", "fit_sae / encode / annotate_features", "Ctrl-C while storing left half the results", "7324ea7"),
]  # fmt: skip

_TEST = re.compile(r"^(tests/\S+::(\w+)(?:\[([^\]]+)\])?):\s*$")
_PHASE = re.compile(r"- during (\w+) phase")
_CASES = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_ERRORS = re.compile(r"Found (\d+) distinct error")
#: hypothesis phases that draw new examples (shrinking and explaining re-run variants of a failing one)
DRAWING = ("explicit", "reuse", "generate")
_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (tests/\S+?)(?: - .*)?$")


def statistics(log: str) -> dict[str, dict[str, int]]:
    """Per test id: ``examples`` drawn and run (passing or failing), ``shrinks`` (examples run while shrinking
    or explaining a failure) and ``errors`` (distinct failures found), from ``--hypothesis-show-statistics``."""
    counts: dict[str, dict[str, int]] = {}
    current, phase = None, None
    for line in log.splitlines():
        if m := _TEST.match(line):
            current = counts.setdefault(m.group(1), {"examples": 0, "shrinks": 0, "errors": 0})
        elif current is None:
            continue
        elif m := _PHASE.search(line):
            phase = m.group(1)
        elif m := _CASES.search(line):
            run = int(m.group(1)) + int(m.group(2))
            current["examples" if phase in DRAWING else "shrinks"] += run
        elif (m := _ERRORS.search(line)) and phase in DRAWING:
            current["errors"] += int(m.group(1))
    return counts


def outcomes(log: str) -> dict[str, str]:
    """Per test id: pytest's outcome (``-rA`` summary lines)."""
    return {m.group(2): m.group(1) for line in log.splitlines() if (m := _OUTCOME.match(line.strip()))}


def run_pytest(args: list[str], log: Path, *, reuse: bool) -> tuple[str, float]:
    """Run pytest with ``args`` (output kept in ``log``), or read ``log`` back; output and CPU seconds."""
    if reuse:
        return log.read_text(), float("nan")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args]
    start = os.times()
    with log.open("w") as out:
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    end = os.times()
    return log.read_text(), (end.children_user - start.children_user) + (end.children_system - start.children_system)


def covered() -> dict[str, str]:
    """Public function -> the test of ``tests/test_properties.py`` that draws its inputs (its ``COVERED``)."""
    source = (ROOT / PROPERTIES).read_text()
    calls = re.findall(r'^@call\("([\w.]+)"', source, flags=re.MULTILINE)
    block = source[source.index("COVERED = {") : source.index("}  # fmt: skip", source.index("COVERED = {"))]
    named = dict(re.findall(r'"([\w.]+)": "(test_\w+)"', block))
    return {**dict.fromkeys(calls, "test_public_call"), **named}


def function_rows(stats: dict[str, dict[str, dict[str, int]]]) -> list[dict]:
    """Examples drawn and run, and distinct errors found, per public function and profile."""
    expensive = re.search(r"^EXPENSIVE = \{(.*)\}$", (ROOT / PROPERTIES).read_text(), flags=re.MULTILINE).group(1)
    rows = []
    for func, test in sorted(covered().items()):
        if test == "test_public_call":
            name = "test_expensive_public_call" if f'"{func}"' in expensive else test
            test_id = f"{PROPERTIES}::{name}[{func}]"
        else:
            test_id = f"{PROPERTIES}::{test}"
        row = {"function": func, "test": test_id.split("::")[1]}
        for profile, counts in stats.items():
            c = counts.get(test_id, {"examples": 0, "errors": 0})
            row[f"{profile}_examples"] = c["examples"]
            row[f"{profile}_errors"] = c["errors"]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", nargs="+", default=["ci", "long"], help="hypothesis profiles to run")
    ap.add_argument("--log-dir", type=Path, default=Path("/tmp/sclens_reliability"))
    ap.add_argument("--reuse-logs", action="store_true", help="parse the logs of an earlier run")
    args = ap.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)

    fault_log, fault_cpu = run_pytest(FAULTS, args.log_dir / "faults.log", reuse=args.reuse_logs)
    faults = [{"test": t.split("::")[1], "file": t.split("::")[0], "outcome": o.lower()}
              for t, o in outcomes(fault_log).items()]  # fmt: skip
    stats, seconds, failed_tests = {}, {}, {}
    for profile in args.profiles:
        t0 = time.time()
        log, cpu = run_pytest([PROPERTIES, f"--hypothesis-profile={profile}", "--hypothesis-show-statistics"],
                          args.log_dir / f"properties_{profile}.log", reuse=args.reuse_logs)  # fmt: skip
        stats[profile] = statistics(log)
        seconds[profile] = (round(cpu), round(time.time() - t0))
        failed_tests[profile] = sorted(t for t, o in outcomes(log).items() if o in ("FAILED", "ERROR"))
    functions = function_rows(stats)

    summary = []
    for profile in args.profiles:
        total = {k: sum(c[k] for c in stats[profile].values()) for k in ("examples", "shrinks", "errors")}
        reached = sum(r[f"{profile}_examples"] > 0 for r in functions)
        summary += [
            {"measure": f"generated examples run ({profile} profile)", "count": total["examples"]},
            {"measure": f"examples re-run to shrink a failure ({profile} profile)", "count": total["shrinks"]},
            {"measure": f"public functions reached ({profile} profile, of {len(functions)})", "count": reached},
            {"measure": f"distinct failures found ({profile} profile)", "count": total["errors"]},
            {"measure": f"generated-input tests failing ({profile} profile)", "count": len(failed_tests[profile])},
        ]
    lost = sum(f["outcome"] in ("failed", "error") for f in faults)
    summary += [
        {"measure": "failures found and fixed (issue 23, generated inputs)",
         "count": sum(f[0].startswith("generated") for f in FIXED)},
        {"measure": "failures found and fixed (issue 23, fault tests)",
         "count": sum(f[0] == "fault tests" for f in FIXED)},
        {"measure": "fault and untrusted-file scenarios tested", "count": len(faults)},
        {"measure": "fault scenarios that lost data", "count": lost},
    ]  # fmt: skip
    dataset = "tests/test_properties.py (generated AnnData), tests/test_faults.py, tests/test_untrusted.py"
    params = {**vars(args), "log_dir": str(args.log_dir), "cpu_and_wall_s": seconds, "fault_cpu_s": round(fault_cpu)}
    notes = (
        "examples run = passing + failing examples of the phases that draw them (explicit, reuse, generate); "
        "shrinking and explaining a failure re-run variants of it, counted apart; failing tests: "
        f"{failed_tests}; fixed: " + "; ".join(f"{f[1]} ({f[2]}) {f[3]}" for f in FIXED)
    )
    save("reliability", summary, dataset=dataset, params=params, notes=notes)
    save("reliability_functions", functions, dataset=dataset, params=params)
    save("reliability_faults", faults, dataset=dataset, params=params)


if __name__ == "__main__":
    main()
