"""Generated inputs (issue 23): every public call returns a result or raises an sclens error naming a parameter.

AnnData objects are drawn with dense / CSR / CSC X and layers, float16-64 and int dtypes, NaN / inf /
negative values, zero or one cell, views, duplicated gene names, categorical labels with missing values
and unused categories, and MuData. Calls: ``tl.fit_sae``, ``tl.encode``, ``tl.feature_specificity``,
``tl.annotate_features``, ``tl.contrast``, ``tl.baseline_features``, ``tl.feature_alignment``,
``get.gene_coverage``, ``get.feature_terms``, ``pl.feature_activation``. For each call: either it returns,
or it raises a ``ValueError`` / ``KeyError`` / ``TypeError`` whose message names one of the function's
parameters or the AnnData field at fault, and the AnnData's fingerprint is unchanged. The annotation of the same counts is the same
dense, CSR, CSC and backed.

Example counts come from the hypothesis profile: ``ci`` (default, 10 per test) or
``long`` (``pytest --hypothesis-profile=long tests/test_properties.py``).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import anndata
import numpy as np
import pandas as pd
from fingerprint import fingerprint
from hypothesis import given
from hypothesis import strategies as st
from scipy import sparse

import sclens as sl

N_GENES = 12
GENE_SETS = {f"set{i}": [f"g{j}" for j in range(i, i + 5)] for i in range(0, N_GENES - 4, 2)}
#: where a message may point instead of a parameter name: the AnnData field at fault
FIELDS = ("adata", "obsm[", "obs[", "layers[", "uns[", "var_names", "the embedding", "the counts")
STORAGES = ("dense", "csr", "csc")


def _store(x: np.ndarray, storage: str) -> Any:
    """``x`` dense, CSR or CSC (scipy has no float16 sparse matrices: those stay dense)."""
    return x if storage == "dense" or x.dtype == np.float16 else getattr(sparse, f"{storage}_matrix")(x)


@st.composite
def datasets(draw, *, min_cells: int = 0, max_cells: int = 40, views: bool = True) -> anndata.AnnData:
    """A small AnnData with counts, an embedding, cell labels and an SAE run (8 features) under ``"sae"``."""
    n = draw(st.integers(min_cells, max_cells))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(["float16", "float32", "float64", "int32", "int64"]))
    counts = rng.poisson(rng.gamma(1.0, 2.0, N_GENES), (n, N_GENES)).astype(dtype)
    damage = draw(st.sampled_from(["none", "none", "negative", "nan", "inf"]))
    if n and damage != "none" and (damage == "negative" or dtype.startswith("float")):
        counts[rng.integers(n), rng.integers(N_GENES)] = {"negative": -1, "nan": np.nan, "inf": np.inf}[damage]
    storage = draw(st.sampled_from(STORAGES))
    names = [f"g{i}" for i in range(N_GENES)]
    if draw(st.booleans()) and draw(st.booleans()):  # a quarter of the objects: a duplicated gene name
        names[1] = names[0]
    labels = rng.choice(np.array(["a", "b", "c", None], dtype=object), n, p=[0.4, 0.3, 0.2, 0.1])
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(labels, categories=["a", "b", "c", "unused"])},
        index=[f"c{i}" for i in range(n)],
    )
    with warnings.catch_warnings():  # duplicated names warn
        warnings.simplefilter("ignore")
        adata = anndata.AnnData(_store(counts, storage), obs=obs, var=pd.DataFrame(index=names))
    adata.layers["counts"] = _store(counts.copy(), draw(st.sampled_from(STORAGES)))
    emb_dtype = draw(st.sampled_from(["float16", "float32", "float64"]))
    emb = rng.normal(size=(n, 4)).astype(emb_dtype)
    if n and draw(st.sampled_from([False, False, False, True])):
        emb[:] = emb[0] if draw(st.booleans()) else np.nan
    adata.obsm["X_emb"] = emb
    acts = np.where(rng.random((n, 8)) < 0.4, rng.gamma(2.0, 1.0, (n, 8)), 0).astype(np.float32)
    adata.obsm["X_sae"] = sparse.csr_matrix(acts)
    table = pd.DataFrame({"kind": "live"}, index=[str(i) for i in range(8)])
    adata.uns["sae"] = {"params": {"use_rep": "X_emb"}, "features": table, "run_id": "r0"}
    if views and n > 1 and draw(st.booleans()):
        adata = adata[rng.random(n) < 0.8]
    return adata


def _names_a_parameter(func: Any, message: str) -> bool:
    params = [p for p in inspect.signature(inspect.unwrap(func)).parameters if p not in ("copy",)]
    return any(p in message for p in params) or any(f in message for f in FIELDS)


def check_contract(func: Any, adata: Any, **kwargs: Any) -> Any:
    """Call ``func``; return its result, or ``None`` after checking the error and that nothing changed."""
    before = fingerprint(adata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = func(adata, **kwargs)
        return adata if out is None else out
    except (ValueError, KeyError, TypeError) as err:
        error = err
    text = str(error.args[0]) if error.args else str(error)
    assert _names_a_parameter(func, text), f"{func.__name__}: {type(error).__name__} names no parameter: {text}"
    assert fingerprint(adata) == before, f"{func.__name__} changed the AnnData before raising: {text}"
    return None


ANNOTATE = {"layer": "counts", "high_quantile": 0.8, "min_high": 2, "n_low": 6, "min_size": 2}


@given(adata=datasets(), method=st.sampled_from(["paper", "rank"]))
def test_feature_specificity(adata, method):
    out = check_contract(sl.tl.feature_specificity, adata, groupby="cell_type", method=method)
    if out is not None:
        assert set(out.uns["sae"]["specificity"]["group_means"].index) <= {"a", "b", "c"}


@given(adata=datasets(), which=st.sampled_from(["X", "counts"]))
def test_annotate_features(adata, which):
    kw = {**ANNOTATE, "layer": None if which == "X" else "counts"}
    out = check_contract(sl.tl.annotate_features, adata, gene_sets=GENE_SETS, **kw)
    if out is not None:
        res = out.uns["sae_go"]["results"]
        assert res["padj"].between(0, 1).all()
        assert set(res["term"]) <= set(GENE_SETS)
        assert out.uns["sae_go"]["params"]["gene_sets"]["fingerprint"]


@given(adata=datasets(views=False), mudata=st.booleans())
def test_fit_sae_and_encode(adata, mudata):
    if mudata:
        import mudata as md

        adata = md.MuData({"rna": adata})
        adata.obsm["X_emb"] = adata.mod["rna"].obsm["X_emb"]
    out = check_contract(sl.tl.fit_sae, adata, use_rep="X_emb", n_features=8, k=2, n_epochs=1, key_added="fit")
    if out is not None:
        z = out.obsm["X_fit"]
        assert z.shape == (adata.n_obs, 8)
        assert np.isfinite(z.data).all()
        assert (z.data >= 0).all()
        check_contract(sl.tl.encode, out, sae_key="fit", key_added="enc")


@given(adata=datasets(), method=st.sampled_from(["pca", "ica", "nmf"]))
def test_baseline_features(adata, method):
    out = check_contract(sl.tl.baseline_features, adata, use_rep="X_emb", method=method, n_components=2)
    if out is not None:
        assert np.isfinite(out.uns[f"{method}_baseline"]["metrics"]["fvu"])


@given(adata=datasets())
def test_get_and_contrast(adata):
    check_contract(sl.get.gene_coverage, adata, gene_sets=GENE_SETS)
    kw = {k: v for k, v in ANNOTATE.items() if k in ("layer", "min_size")}
    check_contract(sl.tl.contrast, adata, groupby="cell_type", groups="a", gene_sets=GENE_SETS, **kw)
    out = check_contract(sl.tl.annotate_features, adata, gene_sets=GENE_SETS, **ANNOTATE)
    if out is not None:
        for f in range(8):
            table = check_contract(sl.get.feature_terms, out, features=f)
            assert table is None or isinstance(table, pd.DataFrame)


@given(adata=datasets(min_cells=20, views=False))
def test_annotation_same_dense_sparse_backed(adata, tmp_path_factory):
    """The same counts in X give the same annotation dense, CSR, CSC and backed on disk."""
    x = adata.X.toarray() if sparse.issparse(adata.X) else np.asarray(adata.X)
    results = {}
    for storage in (*STORAGES, "backed"):
        a = adata.copy()
        a.X = _store(x.copy(), "csr" if storage == "backed" else storage)
        if storage == "backed":
            path = tmp_path_factory.mktemp("backed") / "a.h5ad"
            a.write_h5ad(path)
            a = anndata.read_h5ad(path, backed="r")
        out = check_contract(sl.tl.annotate_features, a, gene_sets=GENE_SETS, **{**ANNOTATE, "layer": None})
        results[storage] = None if out is None else out.uns["sae_go"]["results"]
        if storage == "backed":
            a.file.close()
    ref = results["dense"]
    for storage, res in results.items():
        assert (res is None) == (ref is None), f"{storage} and dense disagree on whether the call succeeds"
        if res is not None:
            pd.testing.assert_frame_equal(res, ref, check_dtype=False, obj=storage)


@given(adata=datasets(), features=st.lists(st.integers(0, 8), min_size=1, max_size=3))
def test_alignment_and_activation_plot(adata, features):
    import matplotlib.pyplot as plt

    out = check_contract(sl.tl.feature_alignment, adata, groupby="cell_type")
    if out is not None:
        table = out.uns["sae"]["alignment"]["table"]
        assert table["auroc"].dropna().between(0, 1).all()
    fig = check_contract(sl.pl.feature_activation, adata, features=features, basis="emb", return_fig=True)
    plt.close("all")
    assert fig is None or hasattr(fig, "savefig")
