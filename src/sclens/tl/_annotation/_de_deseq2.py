"""Reference engine: one pyDESeq2 run (``~condition``, high vs low) per contrast."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..._utils import progress
from ._dispersion import MIN_MU
from ._types import DEResult

if TYPE_CHECKING:
    from ._de import Expression


def _import_pydeseq2():
    try:
        from pydeseq2.dds import DeseqDataSet
        from pydeseq2.ds import DeseqStats
    except ImportError as e:  # pragma: no cover - pydeseq2 is a dependency
        msg = "de_method='deseq2' needs pyDESeq2: `pip install pydeseq2`."
        raise ImportError(msg) from e
    return DeseqDataSet, DeseqStats


def deseq2_one(counts: np.ndarray, n_high: int, genes: pd.Index, *, independent_filter: bool = True) -> pd.DataFrame:
    """pyDESeq2 results (``log2FoldChange``, ``stat``, ``pvalue``, ``padj``, ``baseMean``) of one contrast."""
    return deseq2_fit(counts, n_high, genes, independent_filter=independent_filter).results_df


def deseq2_fit(
    counts: np.ndarray, n_high: int, genes: pd.Index, *, independent_filter: bool = True, min_mu: float = MIN_MU
) -> Any:
    """Fit pyDESeq2 to one contrast; return its ``DeseqStats`` (``.dds`` holds size factors, dispersions).

    ``counts`` is dense int (high cells first, then low cells). Settings follow DESeq2's
    recommendations for single-cell data: ``poscounts`` size factors (every gene has zeros) and no
    replacement of Cook's-distance outliers (DESeq2's ``minReplicatesForReplace=Inf``: with hundreds
    of cells per group, replacement rewrites counts of many genes per contrast); one CPU, quiet.
    ``independent_filter``: pyDESeq2's independent filtering of the adjusted p-values (else BH over
    all tested genes). ``min_mu``: pyDESeq2's floor on the fitted means (its default 0.5; DESeq2
    recommends ``1e-6`` for single cells, which ``benchmarks/annotate.py --reference-min-mu`` compares).
    """
    DeseqDataSet, DeseqStats = _import_pydeseq2()
    n = counts.shape[0]
    meta = pd.DataFrame(
        {"condition": pd.Categorical(["high"] * n_high + ["low"] * (n - n_high), categories=["low", "high"])},
        index=[f"c{i}" for i in range(n)],
    )
    df = pd.DataFrame(counts, index=meta.index, columns=genes)
    from threadpoolctl import threadpool_limits

    # pyDESeq2 runs thousands of tiny L-BFGS fits: threaded BLAS only adds contention (3x slower)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(
            counts=df,
            metadata=meta,
            design="~condition",
            size_factors_fit_type="poscounts",
            refit_cooks=False,
            min_mu=min_mu,
            quiet=True,
            n_cpus=1,
        )
        dds.deseq2()
        ds = DeseqStats(
            dds, contrast=["condition", "high", "low"], independent_filter=independent_filter, quiet=True, n_cpus=1
        )
        ds.summary()
    return ds


def deseq2_engine(
    expr: Expression, high: list[np.ndarray], low: list[np.ndarray], *, n_jobs: int = 1, independent_filter: bool = True
) -> DEResult:
    """Run :func:`deseq2_one` for every contrast; ``n_jobs > 1`` runs contrasts in worker processes."""
    genes = pd.Index(expr.var_names)

    def inputs():
        for h, lo in zip(high, low, strict=True):
            yield expr.dense(np.concatenate([h, lo]), integer=True), h.size

    if n_jobs > 1:
        from joblib import Parallel, delayed

        tables = Parallel(n_jobs=n_jobs)(
            delayed(deseq2_one)(c, nh, genes, independent_filter=independent_filter) for c, nh in inputs()
        )
    else:
        tables = [
            deseq2_one(c, nh, genes, independent_filter=independent_filter)
            for c, nh in progress(inputs(), total=len(high), desc="pyDESeq2")
        ]
    cols = {
        "log2fc": "log2FoldChange",
        "stat": "stat",
        "pvalue": "pvalue",
        "padj": "padj",
        "base_mean": "baseMean",
    }
    arrays = {k: np.vstack([t[c].reindex(genes).to_numpy(dtype=float) for t in tables]) for k, c in cols.items()}
    # genes pyDESeq2 tested but left out of padj by independent filtering / Cook's: still tested
    tested = ~np.isnan(arrays["pvalue"])
    arrays["padj"] = np.where(tested & np.isnan(arrays["padj"]), 1.0, arrays["padj"])
    return DEResult(**arrays)
