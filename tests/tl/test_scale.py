"""Atlas scale: counts backed on disk, in dask arrays or zarr give the in-memory annotation."""

from __future__ import annotations

import hashlib
import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from anndata.experimental import read_elem_lazy

import sclens as sl
from sclens.tl._annotation._de import Expression

da = pytest.importorskip("dask.array")
FLAVORS = ["sclens", "scfeaturelens"]
pytestmark = pytest.mark.filterwarnings("ignore:Writing zarr v2")


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory, toy_annot):
    """The toy annotation data with counts in X and in a layer, as h5ad and zarr, and its gene sets."""
    adata = toy_annot.copy()
    gs = adata.uns.pop("toy")["gene_sets"]
    adata.X = adata.layers["counts"].copy()
    root = tmp_path_factory.mktemp("scale")
    adata.write_h5ad(root / "toy.h5ad")
    adata.write_zarr(root / "toy.zarr")
    return root, gs


@pytest.fixture(scope="module")
def in_memory(on_disk):
    """In-memory annotation (both flavours) of the same file: the reference."""
    root, gs = on_disk
    out = {}
    for flavor in FLAVORS:
        adata = ad.read_h5ad(root / "toy.h5ad")
        sl.tl.annotate_features(adata, gene_sets=gs, flavor=flavor, return_de=[0, 3])
        out[flavor] = adata.uns["sae_go"]
    return out


def _open(root, source):
    """AnnData whose counts (X, or layer ``counts``) are backed / dask / zarr; the layer name to use."""
    if source == "backed X":
        return ad.read_h5ad(root / "toy.h5ad", backed="r"), None
    adata = ad.read_h5ad(root / "toy.h5ad", backed="r")
    if source == "backed layer":
        adata.layers["counts"] = ad.io.sparse_dataset(h5py.File(root / "toy.h5ad", "r")["layers/counts"])
    elif source == "dask sparse (h5ad)":
        adata.layers["counts"] = read_elem_lazy(h5py.File(root / "toy.h5ad", "r")["layers/counts"], chunks=(400, -1))
    elif source == "dask dense, column chunks":
        dense = np.asarray(adata.layers["counts"].toarray())
        adata.layers["counts"] = da.from_array(dense, chunks=(350, 120))
    elif source == "zarr":
        import zarr

        adata.layers["counts"] = read_elem_lazy(zarr.open_group(root / "toy.zarr", mode="r")["layers/counts"])
    return adata, "counts"


def _same(got, want):
    pd.testing.assert_frame_equal(got["results"], want["results"], check_exact=False, rtol=1e-9, atol=1e-300)
    for f, table in want.get("de", {}).items():
        pd.testing.assert_frame_equal(got["de"][f], table, check_exact=False, rtol=1e-9)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(
    "source", ["backed X", "backed layer", "dask sparse (h5ad)", "dask dense, column chunks", "zarr"]
)
def test_out_of_core_equals_in_memory(on_disk, in_memory, source, flavor):
    root, gs = on_disk
    adata, layer = _open(root, source)
    sl.tl.annotate_features(adata, gene_sets=gs, layer=layer, flavor=flavor, return_de=[0, 3])
    assert len(in_memory[flavor]["results"]) > 10  # planted programs found: the comparison is not empty
    _same(adata.uns["sae_go"], in_memory[flavor])


def test_backed_file_never_written(on_disk):
    root, gs = on_disk
    path = root / "toy.h5ad"
    before = (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns)
    adata = ad.read_h5ad(path, backed="r")
    sl.tl.annotate_features(adata, gene_sets=gs, features=[0, 1])
    obs = adata.obs.copy()
    obs["g"] = (np.arange(adata.n_obs) % 2).astype(str)
    adata.obs = obs
    sl.tl.contrast(adata, groupby="g", groups="1", gene_sets=gs)
    adata.file.close()
    assert "sae_go" in adata.uns  # results are in memory
    assert "contrast" in adata.uns
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), os.stat(path).st_mtime_ns) == before


def test_rows_of_backed_and_dask_equal_memory(on_disk):
    """The cells a pyDESeq2 contrast reads (any order, repeats) are the same from every source."""
    root, _ = on_disk
    want = Expression(ad.read_h5ad(root / "toy.h5ad"), layer="counts")
    idx = np.array([1499, 3, 700, 3, 0])
    for source in ("backed X", "dask sparse (h5ad)", "zarr"):
        adata, layer = _open(root, source)
        got = Expression(adata, layer=layer).dense(idx, integer=True)
        np.testing.assert_array_equal(got, want.dense(idx, integer=True))


def test_backed_non_counts_raise(tmp_path, on_disk):
    _, gs = on_disk
    adata = ad.read_h5ad(on_disk[0] / "toy.h5ad")
    adata.X = adata.layers.pop("counts").astype(np.float32) * 0.5
    adata.write_h5ad(tmp_path / "half.h5ad")
    backed = ad.read_h5ad(tmp_path / "half.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"adata.X does not hold integer counts"):
        sl.tl.annotate_features(backed, gene_sets=gs, features=[0])
    assert "sae_go" not in backed.uns


def test_dask_local_cluster_equals_in_memory(on_disk, in_memory):
    """Per-chunk reductions run as tasks on a 2-worker dask.distributed cluster."""
    distributed = pytest.importorskip("distributed")
    root, gs = on_disk
    adata, layer = _open(root, "dask sparse (h5ad)")
    adata.layers[layer] = adata.layers[layer].persist()  # the h5py file handle does not travel
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as c,
        distributed.Client(c) as client,
        distributed.get_task_stream(client) as stream,
    ):
        sl.tl.annotate_features(adata, gene_sets=gs, layer=layer, return_de=[0, 3])
    ran = [t for t in stream.data if "block_stats" in str(t["key"])]
    assert len(ran) == len(adata.layers[layer].chunks[0])  # one task per chunk of cells
    _same(adata.uns["sae_go"], in_memory["sclens"])


def test_encode_backed_file_in_chunks(tmp_path):
    """``encode`` reads a backed file's lazily loaded embedding chunk by chunk: the in-memory result."""
    ref = sl.datasets.toy(n_cells=600, n_genes=200, random_state=0)
    sl.tl.fit_sae(ref, use_rep="X_emb", n_features=32, k=4, n_epochs=2, batch_size=128)
    query = ad.AnnData(ref.layers["counts"], obsm={"X_emb": ref.obsm["X_emb"]})
    query.write_h5ad(tmp_path / "query.h5ad")
    stamp = os.stat(tmp_path / "query.h5ad").st_mtime_ns
    backed = ad.read_h5ad(tmp_path / "query.h5ad", backed="r")
    lazy = read_elem_lazy(h5py.File(tmp_path / "query.h5ad", "r")["obsm/X_emb"], chunks=(100, -1))
    backed.obsm["X_emb"] = lazy
    sl.tl.encode(backed, sae=ref, batch_size=100)
    assert (backed.obsm["X_sae"] != ref.obsm["X_sae"]).nnz == 0
    assert os.stat(tmp_path / "query.h5ad").st_mtime_ns == stamp


def test_model_expression_of_backed_file(scvi_toy, tmp_path):
    """``model=`` on a backed AnnData: the scvi-tools predictions of the cells asked for, in their order.

    (scvi-tools is asked for sorted cells: given unsorted indices it returns values of no requested cell.)
    """
    import torch

    adata, model = scvi_toy
    adata.write_h5ad(tmp_path / "scvi.h5ad")
    backed = ad.read_h5ad(tmp_path / "scvi.h5ad", backed="r")
    idx = np.array([299, 3, 150])
    torch.manual_seed(7)
    got = Expression(backed, model=model).dense(idx)
    torch.manual_seed(7)
    want = model.get_normalized_expression(adata, indices=np.sort(idx), library_size="latent", return_numpy=True)
    np.testing.assert_allclose(got, want[np.unique(idx, return_inverse=True)[1]], rtol=1e-6)


@pytest.mark.parametrize("poscounts", [False, True])
def test_local_group_sums_equal_sparse_products(poscounts):
    """The kernel that adds a chunk into the group sums gives the sparse products' sums.

    The chunk is not canonical (a duplicate entry); one membership has no member in the chunk. Size factors:
    library sizes, or ``poscounts`` against given mean log counts.
    """
    from scipy import sparse

    from sclens.tl._annotation._chunks import add_prods, block_stats, local_stats

    rng = np.random.default_rng(0)
    y = sparse.random(60, 40, density=0.2, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 9, n))
    at = y.indptr[1]  # a second entry for cell 0's first gene
    data, indices = np.insert(y.data.astype(np.float64), at, 2.0), np.insert(y.indices, at, y.indices[0])
    y = sparse.csr_matrix((data, indices, np.r_[0, y.indptr[1:] + 1]), shape=y.shape)
    assert not y.has_canonical_format
    log_means = rng.normal(0.3, 0.5, 40) if poscounts else None
    members = [sparse.random(5, 60, density=0.3, format="csc", random_state=2), sparse.csc_matrix((3, 60))]
    got = [np.zeros((3, m.shape[0], 40)) for m in members]
    want = [np.zeros_like(a) for a in got]
    part = local_stats(y, members, got, log_means=log_means)
    ref = block_stats(y, members, log_means=log_means)
    add_prods(want, ref["prods"])
    assert got[0].any()
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    np.testing.assert_allclose(part["sf"], ref["sf"], rtol=1e-12)


def test_results_table_holds_one_text_per_term():
    """The kept rows of a term point to one ``str`` per column: memory ~ numbers + pointers per row.

    200,000 rows of 50 terms with names of 60-70 characters: a ``str`` per row and text column, as the table
    was built before, costs about 250 bytes more per row than the 80 bytes of 7 numbers and 3 pointers.
    """
    import tracemalloc

    from scipy import sparse

    from sclens.tl._annotation._enrich import GeneSets, collect

    n_terms, n_feat = 50, 4_000
    terms = pd.DataFrame({
        "term": [f"GO:{i:07d}" for i in range(n_terms)],
        "name": [f"regulation of a long biological process called number {i:03d}, in full" for i in range(n_terms)],
        "namespace": "BP",
    })  # fmt: skip
    gs = GeneSets(terms, sparse.csr_matrix((n_terms, 10)), pd.DataFrame(), {}, pd.DataFrame())
    res = {k: np.ones((n_terms, n_feat)) for k in ("pvalue", "padj", "n_overlap", "set_size", "n_de", "odds_ratio")}
    keep = np.ones((n_terms, n_feat), dtype=bool)
    tracemalloc.start()
    table = collect(res, gs, np.arange(n_feat), keep)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(table) == n_terms * n_feat == 200_000
    assert held / len(table) < 100  # bytes per row
    first = table.drop_duplicates("term").set_index("term")
    assert (first["name"].to_numpy() == terms["name"].to_numpy()).all()
    assert table["name"].map(type).eq(str).all()


def test_group_sums_and_activations_freed_before_the_table(toy_annot_copy, monkeypatch):
    """The group sums (2 x 3 x features x genes floats) are gone when the results table is assembled, and the
    activations' CSC copy when the contrasts run: at atlas scale these are the largest arrays held."""
    import gc
    import weakref

    from sclens.tl._annotation import _annotate, _engines

    refs, alive = {}, {}
    init, finish = _engines.FastNB.__init__, _engines.ORA.finish
    features, contrasts = _annotate.annotated_features, _annotate.run_contrasts

    def fast_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        refs["sums"] = weakref.ref(self.scan.sums[0])

    def ora_finish(self):
        gc.collect()
        alive["sums at the table"] = refs["sums"]() is not None
        return finish(self)

    def annotated(*args, **kwargs):
        acts, feats = features(*args, **kwargs)
        refs["acts"] = weakref.ref(acts)
        return acts, feats

    def run(*args, **kwargs):
        gc.collect()
        alive["activations at the contrasts"] = refs["acts"]() is not None
        return contrasts(*args, **kwargs)

    monkeypatch.setattr(_engines.FastNB, "__init__", fast_init)
    monkeypatch.setattr(_engines.ORA, "finish", ora_finish)
    monkeypatch.setattr(_annotate, "annotated_features", annotated)
    monkeypatch.setattr(_annotate, "run_contrasts", run)
    adata = toy_annot_copy
    gs = adata.uns["toy"]["gene_sets"]
    sl.tl.annotate_features(adata, gene_sets=gs, layer="counts", features=[0, 1, 2])
    assert len(adata.uns["sae_go"]["results"]) > 0
    assert alive == {"sums at the table": False, "activations at the contrasts": False}


def test_count_histogram_of_chunks_equals_dense():
    """The count histogram of each contrast's cells: the in-process kernel, the dask task's sparse products and
    :func:`count_histogram` of the dense counts agree (counts 1-300: exact columns and every tail bin)."""
    from scipy import sparse

    from sclens.tl._annotation._chunks import block_stats, local_stats
    from sclens.tl._annotation._dispersion import N_HIST, count_histogram

    rng = np.random.default_rng(0)
    y = sparse.random(80, 30, density=0.4, format="csr", random_state=1, data_rvs=lambda n: rng.integers(1, 300, n))
    y.data = np.where(rng.random(y.nnz) < 0.6, rng.integers(1, 9, y.nnz), y.data).astype(np.float64)
    cells = [np.sort(rng.choice(80, 25, replace=False)) for _ in range(4)]
    high = sparse.csc_matrix((np.ones(40), (np.concatenate([c[:10] for c in cells]), np.repeat(range(4), 10))),
                             shape=(80, 4)).T.tocsc()  # fmt: skip
    low = sparse.csc_matrix((np.ones(60), (np.concatenate([c[10:] for c in cells]), np.repeat(range(4), 15))),
                            shape=(80, 4)).T.tocsc()  # fmt: skip
    got = np.zeros((4, 30, N_HIST), dtype=np.float32)
    local_stats(y, [high, low], [np.zeros((3, 4, 30)), np.zeros((3, 4, 30))], log_means=None, hist=got)
    dask_part = block_stats(y, [high, low], log_means=None, hist=True)["hist"]
    for k, c in enumerate(cells):
        want = count_histogram(y[c].toarray())
        np.testing.assert_allclose(got[k], want, rtol=1e-6)
        np.testing.assert_allclose(dask_part[k], want, rtol=1e-6)
    assert (got[..., N_HIST - 3] > 0).any()  # the last tail bin (>= 256) is filled
