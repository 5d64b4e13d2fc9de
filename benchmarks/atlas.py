"""Atlas-scale benchmark: fit_sae + annotate_features on an h5ad read backed, at several sizes.

Synthetic counts, 20,000 genes named by GO symbols (the GO-annotated symbols of the embedded
snapshot, then filler names): 20 cell types, each with its own log-normal perturbation of
heavy-tailed (log-normal) gene means; 200 programs, each a GO BP term of the snapshot, active in
0.5-5 % of cells and taking 10-40 % of an active cell's UMIs; ~2,000 UMIs per cell (log-normal
library sizes) drawn as a multinomial over genes. The 30-dimensional embedding is a random
projection of cell type and program activities plus noise. The file is written block by block
(``anndata.io.write_elem`` + ``sparse_dataset(...).append``), so the matrix is never in memory.

Each size runs in its own process (so peak RSS is its own): read backed, ``fit_sae`` (defaults,
except ``n_features`` so that >= 2,000 features live), then ``annotate_features`` on all live
features with GO BP of the embedded snapshot, counts read from the backed ``X``. Each row gives wall
seconds and CPU seconds (user + sys): on a shared machine wall time overstates the cost, and the peak RSS
of the whole child and of its ``fit_sae`` part. A failing child stops the driver with a non-zero exit and its
stderr.

``--phases``: the child also samples its RSS every 20 ms (``Phases``) and stores, per step (read, ``fit_sae``,
activations + cell sets, expression pass, DE + ORA, term clusters, the rest of ``annotate_features``), the
peak RSS and the CPU seconds as ``<name>_phases``.

``--tile-from FILE``: instead of simulating, write ``atlas_N.h5ad`` by repeating the cells of an atlas file
written before (``tile_atlas``; N a multiple of its cells): minutes instead of the simulation's half hour at
1M cells, for memory and time at sizes the simulation is too slow to write on a loaded machine. Every cell
then has copies (the SAE and its high cells differ from those of a simulated file of that size); the table
is stored as ``atlas_tiled`` unless ``--name`` says otherwise.

``--compare-term-clusters``: each child also reports the CPU seconds of the term clustering inside
``annotate_features`` (``cluster_terms``, the last step) and its share of the annotation, then,
after its peak RSS is taken, runs the previous implementation (``tests/redundancy_reference.py``:
scipy's average linkage over all of a feature's kept terms) on the same kept terms, reports its CPU
seconds and how many features and rows get the same clusters (the current code clusters each
connected component of close terms on its own, which differs only where distances tie exactly; all
other columns must be identical).

Tables are stored through ``benchmarks/_results.py``: ``benchmarks/results/<name>.{json,md}`` (``--name``,
default ``atlas``) and, with ``--compare-term-clusters``, ``benchmarks/results/<name>_term_clusters.{json,md}``.

Run: ``python benchmarks/atlas.py [--sizes 100000 300000] [--dir /tmp/atlas] [--n-features 2500] [--keep] [--reuse]
[--compare-term-clusters] [--phases] [--tile-from /tmp/atlas/atlas_100000.h5ad] [--name atlas]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from _results import save

N_GENES, N_TYPES, N_PROGRAMS, DIM, BLOCK = 20_000, 20, 200, 30, 5_000


def go_bp():
    import sclens as sl

    return sl.datasets.go_gene_sets("human", namespaces=["BP"])


def gene_names(go, n_genes: int = N_GENES) -> np.ndarray:
    symbols = sorted(go["target"].astype(str).unique())[:n_genes]
    fill = [f"FILLER{i:05d}" for i in range(n_genes - len(symbols))]
    return np.array(symbols + fill)


class Simulator:
    """Draws blocks of cells (counts CSR + embedding) from one fixed set of types and programs."""

    def __init__(self, genes: np.ndarray, go, seed: int = 0) -> None:
        rng = self.rng = np.random.default_rng(seed)
        n = self.n_genes = genes.size
        base = rng.lognormal(0.0, 1.5, n)
        self.type_p = base * rng.lognormal(0.0, 0.5, (N_TYPES, n))
        self.type_cdf = np.cumsum(self.type_p / self.type_p.sum(1, keepdims=True), axis=1)
        pos = {g: i for i, g in enumerate(genes)}
        sizes = go.groupby("source", observed=True).size()
        terms = rng.choice(sizes[(sizes >= 15) & (sizes <= 200)].index, N_PROGRAMS, replace=False)
        by_term = go[go["source"].isin(terms)].groupby("source", observed=True)["target"]
        programs = [np.array([pos[g] for g in by_term.get_group(t) if g in pos]) for t in terms]
        self.prog_size = np.array([p.size for p in programs])
        self.prog_genes = np.zeros((N_PROGRAMS, self.prog_size.max()), dtype=np.int64)
        for i, p in enumerate(programs):
            self.prog_genes[i, : p.size] = p
        self.freq = rng.uniform(0.005, 0.05, N_PROGRAMS)
        self.proj_type = rng.normal(size=(N_TYPES, DIM))
        self.proj_prog = rng.normal(size=(N_PROGRAMS, DIM))

    def block(self, m: int):
        from scipy import sparse

        rng = self.rng
        types = rng.integers(0, N_TYPES, m)
        active = rng.random((m, N_PROGRAMS)) < self.freq
        share = np.where(active, rng.uniform(0.1, 0.4, active.shape), 0.0)
        share = share / np.maximum(1.0, share.sum(1, keepdims=True) / 0.6)
        lib = rng.lognormal(np.log(2000), 0.4, m).astype(np.int64)
        n_prog = rng.binomial(lib[:, None], share)  # UMIs from each active program
        n_base = lib - n_prog.sum(1)
        cell = np.repeat(np.arange(m), n_base)
        u = rng.random(cell.size)
        gene = np.empty(cell.size, dtype=np.int64)
        for t in range(N_TYPES):  # baseline UMIs: multinomial over the cell type's gene means
            sel = types[cell] == t
            gene[sel] = np.searchsorted(self.type_cdf[t], u[sel] * self.type_cdf[t, -1])
        ci, pi = np.nonzero(n_prog)
        reps = n_prog[ci, pi]
        pc, pp = np.repeat(ci, reps), np.repeat(pi, reps)
        pg = self.prog_genes[pp, (rng.random(pp.size) * self.prog_size[pp]).astype(np.int64)]
        rows, cols = np.concatenate([cell, pc]), np.minimum(np.concatenate([gene, pg]), self.n_genes - 1)
        counts = sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(m, self.n_genes))
        counts.sum_duplicates()
        self.last_share = share
        emb = np.eye(N_TYPES)[types] @ self.proj_type + np.log1p(10 * share) @ self.proj_prog
        emb += rng.normal(0, 0.3, emb.shape)
        return counts, emb.astype(np.float32)


def write_atlas(path: Path, n_cells: int, genes: np.ndarray, go) -> float:
    """Write ``n_cells`` synthetic cells to ``path`` block by block; returns seconds taken."""
    import anndata as ad
    import h5py

    t0 = time.perf_counter()
    sim = Simulator(genes, go)
    embs = []
    with h5py.File(path, "w") as f:
        for start in range(0, n_cells, BLOCK):
            counts, emb = sim.block(min(BLOCK, n_cells - start))
            embs.append(emb)
            if start == 0:
                ad.io.write_elem(f, "X", counts)
            else:
                ad.io.sparse_dataset(f["X"]).append(counts)
        _write_rest(f, n_cells, genes, np.vstack(embs))
    return time.perf_counter() - t0


def tile_atlas(path: Path, source: Path, n_cells: int) -> float:
    """Write ``n_cells`` cells to ``path`` by repeating the cells of the atlas file ``source``; returns seconds.

    Counts and embedding are ``source``'s, ``n_cells / source cells`` times over (cell names are new): a file of
    1M cells in minutes instead of the simulation's half hour, for memory and time at sizes the simulation is
    too slow to write. Every cell has copies, so the SAE's features and their high cells differ from a simulated
    file of that size.
    """
    import anndata as ad
    import h5py

    t0 = time.perf_counter()
    with h5py.File(source, "r") as src, h5py.File(path, "w") as f:
        x = ad.io.sparse_dataset(src["X"])
        n0 = x.shape[0]
        if n_cells % n0:
            sys.exit(f"atlas.py: --tile-from: {n_cells} cells is not a multiple of the {n0} cells of {source}")
        for rep in range(n_cells // n0):
            for start in range(0, n0, BLOCK):
                counts = x[start : min(start + BLOCK, n0)]
                if rep == start == 0:
                    ad.io.write_elem(f, "X", counts)
                else:
                    ad.io.sparse_dataset(f["X"]).append(counts)
        genes = ad.io.read_elem(src["var"]).index.to_numpy()
        _write_rest(f, n_cells, genes, np.tile(src["obsm"]["X_emb"][:], (n_cells // n0, 1)))
    return time.perf_counter() - t0


def _write_rest(f, n_cells: int, genes: np.ndarray, emb: np.ndarray) -> None:
    """Write everything of an atlas h5ad but ``X`` into the open file ``f``."""
    import anndata as ad
    import pandas as pd

    ad.io.write_elem(f, "obs", pd.DataFrame(index=[f"cell{i}" for i in range(n_cells)]))
    ad.io.write_elem(f, "var", pd.DataFrame(index=genes))
    ad.io.write_elem(f, "obsm", {"X_emb": emb})
    for key in ("layers", "obsp", "varm", "varp", "uns"):
        ad.io.write_elem(f, key, {})
    f.attrs["encoding-type"], f.attrs["encoding-version"] = "anndata", "0.1.0"


class Phases:
    """Peak RSS (``/proc/self/statm``, sampled every 20 ms by a thread) and CPU seconds of named phases.

    ``wrap`` makes a function a phase; a phase inside another counts for itself only (the outer one gets
    the rest of its time, and the samples taken outside the inner one).
    """

    def __init__(self, first: str) -> None:
        self.now, self.last = first, time.process_time()
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * page / 2**30
            self.peak[self.now] = max(self.peak.get(self.now, 0.0), rss)
            time.sleep(0.02)

    def switch(self, name: str) -> str:
        """Start phase ``name``; returns the phase it ends."""
        c = time.process_time()
        self.cpu[self.now] = self.cpu.get(self.now, 0.0) + c - self.last
        self.last, (self.now, before) = c, (name, self.now)
        return before

    def wrap(self, owner, attr: str, name: str) -> None:
        """Make ``owner.attr`` (a function or method) the phase ``name``."""
        fn = getattr(owner, attr)

        def phase(*args, **kwargs):
            outer = self.switch(name)
            try:
                return fn(*args, **kwargs)
            finally:
                self.switch(outer)

        setattr(owner, attr, phase)

    def table(self) -> dict:
        self.switch("end")
        return {k: [round(self.peak.get(k, float("nan")), 2), round(self.cpu[k], 1)] for k in self.cpu if k != "end"}


def run_one(path: str, n_features: int, *, compare: bool = False, phases: bool = False) -> dict:
    import anndata as ad

    import sclens as sl
    from sclens.tl._annotation import _annotate, _de, _redundancy

    go = go_bp()
    calls, cluster_terms = [], _redundancy.cluster_terms

    def timed(*args, **kwargs):  # the term clustering inside annotate_features, timed and kept for the reference
        c0 = time.process_time()
        out = cluster_terms(*args, **kwargs)
        calls.append((time.process_time() - c0, args, kwargs, out))
        return out

    _redundancy.cluster_terms = timed
    mon = Phases("read") if phases else None
    if mon is not None:  # the steps of annotate_features, each a phase
        for owner, attr, name in [
            (_annotate, "annotated_features", "activations + cell sets"),
            (_annotate, "cell_sets", "activations + cell sets"), (_annotate, "run_contrasts", "DE + ORA"),
            (_de.Expression, "scan", "expression pass"),
            (_redundancy, "cluster_terms", "term clusters"),
        ]:  # fmt: skip
            mon.wrap(owner, attr, name)
    adata = ad.read_h5ad(path, backed="r")
    if mon is not None:
        mon.switch("fit_sae")
    t0, c0 = time.perf_counter(), time.process_time()
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=n_features)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # the peak up to the end of fit_sae
    live = int((adata.uns["sae"]["features"]["kind"] != "dead").sum())
    if mon is not None:
        mon.switch("annotate (other)")
    t0, c0 = time.perf_counter(), time.process_time()
    sl.tl.annotate_features(adata, gene_sets=go)
    t_ann, c_ann = time.perf_counter() - t0, time.process_time() - c0
    res = adata.uns["sae_go"]["results"]
    row = {
        "cells": adata.n_obs, "genes": adata.n_vars, "live_features": live, "fit_s": round(t_fit, 1),
        "fit_cpu_s": round(c_fit, 1), "annotate_s": round(t_ann, 1), "annotate_cpu_s": round(c_ann, 1),
        "annotated_features": int(res["feature"].nunique()),
        "peak_rss_GiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "fit_peak_rss_GiB": round(rss_fit, 2),
        "term_cluster_cpu_s": round(calls[-1][0], 1), "kept_terms": len(res),
    }  # fmt: skip
    if mon is not None:
        row["phases"] = mon.table()
    if compare:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from redundancy_reference import cluster_terms_reference

        _, args, kwargs, new = calls[-1]
        c0 = time.process_time()
        old = cluster_terms_reference(*args, **kwargs)
        row["term_cluster_ref_cpu_s"] = round(time.process_time() - c0, 1)
        row.update(agreement(new, old))
    return row


def agreement(new, old) -> dict:
    """Features and rows whose term clusters (as sets of terms) and representatives are the same in both tables.

    Raises when any other column differs (only the clustering may).
    """
    cols = ["term_cluster", "representative"]
    if not new.drop(columns=cols).equals(old.drop(columns=cols)):
        sys.exit("atlas.py: cluster_terms changed columns other than term_cluster / representative")
    f = new["feature"].to_numpy()
    pair = np.stack([f, new["term_cluster"].to_numpy(), old["term_cluster"].to_numpy()], axis=1)
    _, pair_id, pair_n = np.unique(pair, axis=0, return_inverse=True, return_counts=True)
    _, new_id, new_n = np.unique(pair[:, :2], axis=0, return_inverse=True, return_counts=True)
    _, old_id, old_n = np.unique(pair[:, [0, 2]], axis=0, return_inverse=True, return_counts=True)
    pn = pair_n[pair_id.ravel()]
    same = (pn == new_n[new_id.ravel()]) & (pn == old_n[old_id.ravel()])  # the row's cluster has the same terms
    same &= new["representative"].to_numpy() == old["representative"].to_numpy()
    by_feature = np.bincount(np.unique(f, return_inverse=True)[1], weights=~same) == 0
    return {"term_cluster_rows_same": int(same.sum()), "term_cluster_features_same": int(by_feature.sum())}


def run_child(path: Path, n_features: int, extra: tuple[str, ...] = ()) -> dict:
    """Run one size in its own process; a failing child stops the driver with its stderr shown."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--one", str(path), "--n-features", str(n_features), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("{"):
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited {proc.returncode}"
        sys.stderr.write(f"{proc.stderr}\n{proc.stdout[-2000:]}\n")
        sys.exit(f"atlas.py: the child for {path.name} {how} (command: {' '.join(cmd)}); its output is above.")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(lines[-1]), "child_s": round(wall, 1), "child_cpu_s": round(cpu, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--dir", default="/tmp/sclens_atlas")
    ap.add_argument("--n-features", type=int, default=2500)
    ap.add_argument("--keep", action="store_true", help="keep the h5ad files")
    ap.add_argument("--reuse", action="store_true", help="use an existing atlas_N.h5ad in --dir instead of writing it")
    ap.add_argument("--compare-term-clusters", action="store_true", help="also time the previous term clustering")
    ap.add_argument("--tile-from", help="write atlas_N.h5ad by repeating the cells of this atlas file (tile_atlas)")
    ap.add_argument("--phases", action="store_true", help="also store peak RSS and CPU seconds per step")
    ap.add_argument("--name", help="name of the stored table (default: atlas, or atlas_tiled with --tile-from)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.n_features, compare=args.compare_term_clusters, phases=args.phases)))
        return
    out = Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    go = go_bp()
    genes = gene_names(go)
    rows = []
    for n in args.sizes:
        path = out / f"atlas_{n}.h5ad"
        reuse = args.reuse and path.exists()
        if reuse:
            t_write = None
        elif args.tile_from:
            t_write = round(tile_atlas(path, Path(args.tile_from), n), 1)
        else:
            t_write = round(write_atlas(path, n, genes, go), 1)
        extra = tuple(f for f, on in [("--compare-term-clusters", args.compare_term_clusters),
                                      ("--phases", args.phases)] if on)  # fmt: skip
        row = {**run_child(path, args.n_features, extra), "write_s": t_write}
        row["file_GiB"] = round(path.stat().st_size / 2**30, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            path.unlink()
    print("Wall seconds on a shared machine overstate the cost; *_cpu_s are the child's user + sys seconds.")
    print(table(rows))
    dataset = (f"synthetic atlas (benchmarks/atlas.py), {N_GENES:,} genes, GO BP of the embedded snapshot; "
               f"sizes {args.sizes}")  # fmt: skip
    if args.tile_from:
        dataset += f"; the cells of {Path(args.tile_from).name} repeated (tile_atlas)"
    name = args.name or ("atlas_tiled" if args.tile_from else "atlas")
    save(name, [summary_row(r) for r in rows], dataset=dataset, params=vars(args), notes=table(rows))
    if args.compare_term_clusters:
        save(f"{name}_term_clusters", [term_cluster_row(r) for r in rows], dataset=dataset, params=vars(args))
    if args.phases:
        phase_rows = [{"cells": r["cells"], "phase": k, "peak RSS GiB": v[0], "CPU s": v[1]}
                      for r in rows for k, v in r["phases"].items()]  # fmt: skip
        save(f"{name}_phases", phase_rows, dataset=dataset, params=vars(args))


def summary_row(r: dict) -> dict:
    """The stored row of one size: wall and CPU seconds, peak RSS, the term clustering's CPU share."""
    return {
        "cells": r["cells"], "genes": r["genes"], "live features": r["live_features"],
        "annotated features": r["annotated_features"], "fit s": r["fit_s"], "fit CPU s": r["fit_cpu_s"],
        "annotate s": r["annotate_s"], "annotate CPU s": r["annotate_cpu_s"], "peak RSS GiB": r["peak_rss_GiB"],
        "fit peak RSS GiB": r["fit_peak_rss_GiB"],
        "term clusters CPU s": r["term_cluster_cpu_s"],
        "term clusters share %": round(100 * r["term_cluster_cpu_s"] / max(r["annotate_cpu_s"], 1e-9), 1),
        "file GiB": r["file_GiB"], "write s": r["write_s"],
    }  # fmt: skip


def term_cluster_row(r: dict) -> dict:
    """The stored comparison of one size: term clustering now and with the previous code (CPU seconds, agreement)."""
    new, old, ann = r["term_cluster_cpu_s"], r["term_cluster_ref_cpu_s"], r["annotate_cpu_s"]
    before = ann - new + old  # the annotation with the previous clustering
    return {
        "cells": r["cells"], "kept terms": r["kept_terms"], "annotate CPU s": ann, "term clusters CPU s": new,
        "share %": round(100 * new / ann, 1), "previous code CPU s": old,
        "previous share %": round(100 * old / before, 1), "speed-up": round(old / max(new, 1e-9), 1),
        "features same": f"{r['term_cluster_features_same']:,} / {r['annotated_features']:,}",
        "rows same": f"{r['term_cluster_rows_same']:,} / {r['kept_terms']:,}",
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    """Markdown table of the measured rows: wall seconds with CPU (user + sys) seconds in brackets."""
    head = "| cells | genes | live / annotated features | fit s (CPU) | annotate s (CPU) | peak RSS (GiB) |"
    lines = [head, "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['cells']:,} | {r['genes']:,} | {r['live_features']:,} / {r['annotated_features']:,} "
            f"| {r['fit_s']:.0f} ({r['fit_cpu_s']:.0f}) | {r['annotate_s']:.0f} ({r['annotate_cpu_s']:.0f}) "
            f"| {r['peak_rss_GiB']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
