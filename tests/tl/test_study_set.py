"""The study set of a contrast on real cells: the cap on up-regulated genes and the independent filter."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import sclens as sl
from sclens._stats import fdr_bh
from sclens.tl._annotation._de_fast import independent_filtering
from sclens.tl._annotation._enrich import up_genes
from sclens.tl._annotation._types import DEResult

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "biology.py"
#: canonical B-cell markers (Hao et al. 2021) and the GO vocabulary of two types (roots, with descendants)
MARKERS = {"B": ["MS4A1", "CD79A", "CD79B"]}
ROOTS = {
    "T": ["GO:0042110"],  # T cell activation
    "macrophage": ["GO:0006629", "GO:0002274"],  # lipid metabolic process; myeloid leukocyte activation
    "B": ["GO:0042113", "GO:0050853"],  # B cell activation; B cell receptor signaling pathway
}


def test_up_genes_keeps_the_largest_fold_changes():
    rng = np.random.default_rng(0)
    lfc = rng.normal(1.5, 1.0, (3, 400))
    padj = rng.random((3, 400)) * 0.1
    stat = rng.normal(0, 3, (3, 400))
    lfc[0, :50], lfc[0, 50:] = 3.0, np.minimum(lfc[0, 50:], 2.9)  # ties at the cut: broken by the statistic
    padj[0, :50] = 0.01
    de = DEResult(lfc, stat, padj, padj, np.ones_like(lfc))
    full = up_genes(de, de_alpha=0.05, min_log2fc=1.0)
    capped = up_genes(de, de_alpha=0.05, min_log2fc=1.0, max_genes=30)
    assert (capped <= full).all()
    for c in range(3):
        kept = np.flatnonzero(capped[c])
        assert kept.size == min(30, full[c].sum())
        out = np.flatnonzero(full[c] & ~capped[c])
        assert lfc[c, kept].min() >= lfc[c, out].max()
    tied = np.flatnonzero(capped[0])
    assert set(tied) <= set(range(50))
    assert stat[0, tied].min() >= stat[0, np.setdiff1d(np.arange(50), tied)].max()
    np.testing.assert_array_equal(up_genes(de, de_alpha=0.05, min_log2fc=1.0, max_genes=10_000), full)


@pytest.fixture(scope="module")
def immune():
    """559 real immune cells with the cell types of ``benchmarks/biology.py`` (its marker rule)."""
    spec = importlib.util.spec_from_file_location("biology_benchmark", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    adata = sl.datasets.immune559_counts()
    adata.obs["cell_type"] = bench.call_cell_types(adata)
    return adata


@pytest.fixture(scope="module")
def bp():
    return sl.datasets.go_gene_sets("human", namespaces=("BP",))


@functools.cache
def _vocabulary(cell_type: str) -> set[str]:
    onto = sl.datasets.go_ontology()
    return set().union(*(onto.descendants(t, include_self=True) for t in ROOTS[cell_type]))


def _contrast(adata, bp, group, **kw):
    out = sl.tl.contrast(adata, groupby="cell_type", groups=group, gene_sets=bp, layer="counts", copy=True, **kw)
    return out.uns["contrast"]


def test_filter_off_calls_the_markers_of_a_small_population(immune, bp):
    """B cells (48 of 559) against the rest: CD79A has a base mean of ~0.1, below pyDESeq2's filter cutoff."""
    off, on = _contrast(immune, bp, "B"), _contrast(immune, bp, "B", independent_filter=True)
    called = {name: set(r["de"].index[r["de"]["padj"] < 0.05]) for name, r in (("off", off), ("on", on))}
    assert set(MARKERS["B"]) <= called["off"]
    assert not set(MARKERS["B"]) <= called["on"]
    de = off["de"]
    ok = de["pvalue"].notna().to_numpy()
    np.testing.assert_allclose(de["padj"].to_numpy()[ok], fdr_bh(de["pvalue"].to_numpy()[None, ok])[0], rtol=1e-10)
    p, base = on["de"]["pvalue"].to_numpy()[None], on["de"]["base_mean"].to_numpy()[None]
    np.testing.assert_allclose(on["de"]["padj"].to_numpy(), independent_filtering(p, base)[0], rtol=1e-10)


@pytest.mark.parametrize("cell_type", ["T", "macrophage"])
def test_defaults_put_the_type_vocabulary_first(immune, bp, cell_type):
    """The whole type against the rest, defaults: a term of the type's GO vocabulary among the top 5.

    Measured: T cell activation 1st (T), a lipid-metabolism term 5th (macrophages). With
    filtering on and no cap, neither vocabulary is in the top 40 (T: never kept; macrophages: rank 48).
    """
    res = _contrast(immune, bp, cell_type)["results"]
    assert res["term"].head(5).isin(_vocabulary(cell_type)).any(), res["name"].head(5).tolist()
    old = _contrast(immune, bp, cell_type, independent_filter=True, max_de_genes=None)["results"]
    assert not old["term"].head(40).isin(_vocabulary(cell_type)).any(), old["name"].head(5).tolist()


def test_elim_brings_the_b_cell_vocabulary_into_the_top_10(immune, bp):
    """B cells against the rest: "B cell receptor signaling pathway" is 11th with every term tested on all
    its genes (RNA splicing, localisation and ribosome biogenesis parents first) and 3rd with elim, whose
    kept terms are no longer significant through a kept descendant's genes alone."""
    classic = _contrast(immune, bp, "B")["results"]
    elim = _contrast(immune, bp, "B", go_algorithm="elim")["results"]
    assert not classic["term"].head(10).isin(_vocabulary("B")).any()
    assert elim["term"].head(3).isin(_vocabulary("B")).any(), elim["name"].head(10).tolist()
    assert len(elim) < len(classic) / 3
    # a kept term's p-value is computed on the genes its significant descendants left it
    assert (elim["set_size_elim"] <= elim["set_size"]).all()
    assert (elim["n_overlap_elim"] < elim["n_overlap"]).any()
    assert {"RNA splicing", "mRNA processing", "ribosome biogenesis"} <= set(classic["name"].head(10))
    assert not {"RNA splicing", "mRNA processing", "ribosome biogenesis"} & set(elim["name"])


def test_max_de_genes_caps_the_study_set(immune, bp):
    capped = _contrast(immune, bp, "macrophage", max_de_genes=50)["results"]
    full = _contrast(immune, bp, "macrophage", max_de_genes=None)["results"]
    assert capped["n_de"].max() == 50
    assert full["n_de"].max() > 1000


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"max_de_genes": 0}, ValueError, "max_de_genes must be a positive integer or None, got 0"),
        ({"max_de_genes": 2.5}, ValueError, "max_de_genes must be a positive integer or None, got 2.5"),
        ({"max_de_genes": True}, ValueError, "max_de_genes must be a positive integer or None, got True"),
        ({"independent_filter": "yes"}, TypeError, "independent_filter must be True or False, got 'yes'"),
        ({"go_algorithm": "weight"}, ValueError, "go_algorithm must be 'classic' or 'elim', got 'weight'"),
    ],
)
def test_bad_study_options(immune, bp, kw, err, match):
    before = dict(immune.uns)
    with pytest.raises(err, match=match):
        sl.tl.contrast(immune, groupby="cell_type", groups="B", gene_sets=bp, layer="counts", **kw)
    assert dict(immune.uns) == before
