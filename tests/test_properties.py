"""Generated inputs (issue 23): every public call returns a result or raises an sclens error naming a parameter.

AnnData objects are drawn with dense / CSR / CSC X and layers, float16-64 and int dtypes, NaN / inf /
negative values, zero or one cell, views, duplicated gene names, categorical labels with missing values
and unused categories, and MuData, for ``tl.fit_sae``, ``tl.encode``, ``tl.feature_specificity``,
``tl.annotate_features``, ``tl.contrast``, ``tl.baseline_features``, ``tl.feature_alignment``,
``get.gene_coverage``, ``get.feature_terms`` and ``pl.feature_activation``. Every other public function
(``CALLS``) gets a fully analysed AnnData with one drawn defect (a view, one or no cell, missing labels,
a dropped result, weights, activations, embedding or counts, NaN in the embedding, non-integer counts,
duplicated genes, a stale run) and drawn arguments, valid or not. For each call: either it returns a
valid result, or it raises a ``ValueError`` / ``KeyError`` / ``TypeError`` (``FileNotFoundError`` for a
path) whose message names one of the function's parameters or the AnnData field at fault, and the input's
fingerprint is unchanged. The annotation of the same counts is the same dense, CSR, CSC and backed, and so
is the annotation null dense and CSR. ``test_every_public_function_is_covered`` fails for a public
``tl`` / ``pl`` / ``get`` function that no test here draws inputs for.

Example counts per test come from ``EXAMPLES`` for the hypothesis profile: ``ci`` (default, 10 per test;
5 per function of ``CALLS``, 2 for those that refit or re-annotate) or ``long`` (``pytest
--hypothesis-profile=long tests/test_properties.py``: 40-200 per function, bounded by what one example costs,
so that the run reaches every function; an example running over 2 minutes fails).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any
from unittest import mock

import anndata
import numpy as np
import pandas as pd
import pytest
from fingerprint import fingerprint
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse

import sclens as sl

N_GENES = 12
GENE_SETS = {f"set{i}": [f"g{j}" for j in range(i, i + 5)] for i in range(0, N_GENES - 4, 2)}
#: where a message may point instead of a parameter name: the AnnData field at fault
FIELDS = ("adata", "obsm[", "obs[", "layers[", "uns[", "var_names", "the embedding", "the counts")
STORAGES = ("dense", "csr", "csc")
#: examples per test in the ``ci`` (default) and ``long`` profiles, bounded by what one example costs (one
#: thread: a fit about 10 s, an annotation 3 s, most public calls 0.2 s), so that ``long`` reaches every
#: function in under an hour; any other profile runs its own ``max_examples``
EXAMPLES = {
    "test_feature_specificity": (10, 200), "test_annotate_features": (10, 60), "test_fit_sae_and_encode": (10, 40),
    "test_baseline_features": (10, 200), "test_get_and_contrast": (10, 150),
    "test_annotation_same_dense_sparse_backed": (10, 60), "test_alignment_and_activation_plot": (10, 200),
    "test_public_call": (5, 100), "test_expensive_public_call": (2, 40), "test_sweep_plot": (10, 200),
}  # fmt: skip


def example_budget(test: str) -> settings:
    """The settings of ``test``: its example count in the current profile (``EXAMPLES``)."""
    ci, long = EXAMPLES[test]
    profile = settings.get_current_profile_name()
    return settings(max_examples={"ci": ci, "long": long}.get(profile, settings.default.max_examples))


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


def _state(data: Any) -> str:
    """The fingerprint of an AnnData / MuData, the content of a table (``pl.sweep`` takes one)."""
    return fingerprint(data) if hasattr(data, "uns") else repr(data.to_dict("list"))


def check_contract(func: Any, adata: Any, **kwargs: Any) -> Any:
    """Call ``func``; return its result, or ``None`` after checking the error and that nothing changed."""
    before = _state(adata)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = func(adata, **kwargs)
        return adata if out is None else out
    except (ValueError, KeyError, TypeError, FileNotFoundError) as err:  # the last: a path argument
        error = err
    text = str(error.args[0]) if error.args else str(error)
    assert _names_a_parameter(func, text), (
        f"{getattr(func, '__name__', func)}: {type(error).__name__} names no parameter: {text}"
    )
    assert _state(adata) == before, f"{getattr(func, '__name__', func)} changed its input before raising: {text}"
    return None


ANNOTATE = {"layer": "counts", "high_quantile": 0.8, "min_high": 2, "n_low": 6, "min_size": 2}


@example_budget("test_feature_specificity")
@given(adata=datasets(), method=st.sampled_from(["paper", "rank"]))
def test_feature_specificity(adata, method):
    out = check_contract(sl.tl.feature_specificity, adata, groupby="cell_type", method=method)
    if out is not None:
        assert set(out.uns["sae"]["specificity"]["group_means"].index) <= {"a", "b", "c"}


@example_budget("test_annotate_features")
@given(adata=datasets(), which=st.sampled_from(["X", "counts"]))
def test_annotate_features(adata, which):
    kw = {**ANNOTATE, "layer": None if which == "X" else "counts"}
    out = check_contract(sl.tl.annotate_features, adata, gene_sets=GENE_SETS, **kw)
    if out is not None:
        res = out.uns["sae_go"]["results"]
        assert res["padj"].between(0, 1).all()
        assert set(res["term"]) <= set(GENE_SETS)
        assert out.uns["sae_go"]["params"]["gene_sets"]["fingerprint"]


@example_budget("test_fit_sae_and_encode")
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


@example_budget("test_baseline_features")
@given(adata=datasets(), method=st.sampled_from(["pca", "ica", "nmf"]))
def test_baseline_features(adata, method):
    out = check_contract(sl.tl.baseline_features, adata, use_rep="X_emb", method=method, n_components=2)
    if out is not None:
        assert np.isfinite(out.uns[f"{method}_baseline"]["metrics"]["fvu"])


@example_budget("test_get_and_contrast")
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


@example_budget("test_annotation_same_dense_sparse_backed")
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


@example_budget("test_alignment_and_activation_plot")
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


# ---------------------------------------------------------------------------------------------------------
# every other public function: drawn damage to a fully analysed AnnData and drawn arguments, valid or not


def _tiny_umap(mat, **kwargs):
    """A stand-in for UMAP (its numba compilation alone exceeds this file's time budget; tests/tl test it)."""
    dense = mat.toarray() if sparse.issparse(mat) else np.asarray(mat)
    return np.column_stack([dense.sum(1), np.arange(dense.shape[0])]).astype(np.float32)


@pytest.fixture(scope="module")
def analysed():
    """240 toy cells x 160 genes with every result a reader needs, and a steered copy; read-only."""
    from biology_fixtures import categories_for

    adata = sl.datasets.toy(n_cells=240, n_genes=160, random_state=0)
    rng = np.random.default_rng(0)
    adata.obs["batch"] = pd.Categorical(rng.choice(["b0", "b1"], adata.n_obs))
    lineage = {t: f"L{i % 2}" for i, t in enumerate(adata.obs["cell_type"].cat.categories)}
    adata.obs["lineage"] = adata.obs["cell_type"].map(lineage).astype("category")
    adata.obsm["X_umap"] = np.asarray(adata.obsm["X_emb"])[:, :2].copy()
    gs = adata.uns["toy"]["gene_sets"]
    with warnings.catch_warnings(), mock.patch("sclens.tl._feature_space._umap", _tiny_umap):
        warnings.simplefilter("ignore")
        sl.tl.fit_sae(adata, use_rep="X_emb", n_features=16, k=3, n_epochs=2, lr=1e-2)
        sl.tl.annotate_features(adata, gene_sets=gs, **{**ANNOTATE, "n_low": 60, "min_size": 3})
        sl.tl.feature_specificity(adata, groupby="cell_type")
        sl.tl.feature_alignment(adata, groupby="cell_type")
        categories = categories_for(adata.uns["sae_go"]["results"])
        sl.tl.feature_space(adata, categories=categories, namespaces=None, n_neighbors=3)
        sl.tl.annotation_null(adata, gene_sets=gs, n_permutations=1, nulls=["cells"])
        sl.tl.evaluate(adata, groupby="cell_type", n_seeds=2, k=(1, 2), baselines=("embedding",), fit_kwargs=FIT1)
        steered = sl.tl.steer(adata, features=[0, 1], cells={"cell_type": "type_0"})
    return adata, steered, gs


FIT1 = {"n_epochs": 1}
CELL_SETS = [None, {"cell_type": "type_0"}, {"cell_type": "nope"}, {"nope": "x"}, ["c0", "c1"], np.zeros(3, bool)]
FEATURES = st.one_of(
    st.integers(-2, 20), st.lists(st.integers(-1, 17), min_size=0, max_size=3), st.sampled_from(["0", 1.5, None])
)
GROUPBY = st.sampled_from(["cell_type", "cell_type", "batch", "lineage", "n_counts", "nope"])
KEYS = st.sampled_from(["sae", "sae_go", "nope", "specificity", "alignment", "feature_space", "evaluation"])


def _damaged(draw, adata: anndata.AnnData) -> anndata.AnnData:
    """A copy of ``adata`` with one drawn defect (or none)."""
    damage = draw(
        st.sampled_from([
            "none", "none", "none", "view", "one cell", "no cell", "nan labels", "drop annotation", "drop specificity",
            "drop weights", "drop activations", "drop embedding", "drop umap", "nan embedding", "float counts",
            "duplicated genes", "stale", "drop counts",
        ])
    )  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if damage in ("view", "one cell", "no cell"):
        n = {"view": adata.n_obs // 2, "one cell": 1, "no cell": 0}[damage]
        return adata[np.sort(rng.choice(adata.n_obs, n, replace=False))]
    a = adata.copy()
    if damage == "nan labels":
        labels = a.obs["cell_type"].cat.add_categories(["unused"])
        labels[rng.random(a.n_obs) < 0.2] = np.nan
        a.obs["cell_type"] = labels
    elif damage.startswith("drop"):
        where = {
            "annotation": (a.uns, "sae_go"), "specificity": (a.uns["sae"], "specificity"),
            "weights": (a.uns["sae"], "weights"), "activations": (a.obsm, "X_sae"), "embedding": (a.obsm, "X_emb"),
            "umap": (a.obsm, "X_umap"), "counts": (a.layers, "counts"),
        }  # fmt: skip
        holder, key = where[damage.split()[1]]
        del holder[key]
    elif damage == "nan embedding":
        a.obsm["X_emb"] = np.where(rng.random(a.obsm["X_emb"].shape) < 0.01, np.nan, a.obsm["X_emb"])
    elif damage == "float counts":
        a.layers["counts"] = a.layers["counts"] * 0.5
    elif damage == "duplicated genes":
        a.var_names = [a.var_names[0], *a.var_names[:-1]]
    elif damage == "stale":
        a.uns["sae"]["run_id"] = "another run"
    return a


def _figure(out: Any) -> None:
    import matplotlib.pyplot as plt

    assert hasattr(out, "savefig"), f"a plot returned {type(out).__name__}, not a figure"
    plt.close("all")


def _stored(key: str, parent: str | None = None):
    """Check that a successful call stored ``uns[parent][key]`` with its params."""

    def check(out: Any) -> None:
        holder = out.uns if parent is None else out.uns[parent]
        assert "params" in holder[key], f"uns[{parent}][{key}] stored without params"

    return check


#: name -> (make(adata, steered, gene sets, draw) -> (function, its AnnData, kwargs), check of a result)
CALLS: dict[str, tuple[Any, Any]] = {}


def call(name: str, check: Any = None):
    """Register ``make`` as the drawn call of the public function ``name``."""

    def register(make):
        CALLS[name] = (make, check or (lambda out: None))
        return make

    return register


def _returns(kind: type):
    def check(out: Any) -> None:
        assert isinstance(out, kind), f"returned {type(out).__name__}, not {kind.__name__}"

    return check


def _pick(draw, *values: Any) -> Any:
    return draw(st.sampled_from(values))


@call("tl.annotation_null", _stored("null2", "sae"))
def _annotation_null(a, s, gs, draw):
    kw = {
        "gene_sets": _pick(draw, gs, gs.iloc[: len(gs) // 3], "nope"),
        "nulls": _pick(draw, ["cells"], ["genes"], ["directions"], ["bogus"], []),
        "n_permutations": _pick(draw, 1, 0, -1, 1.5),
    }
    return sl.tl.annotation_null, a, {**kw, "key_added": "null2"}


@call("tl.batch_steer")
def _batch_steer(a, s, gs, draw):
    kw = {
        "batch_key": _pick(draw, "batch", "cell_type", "nope", "n_counts"),
        "features": draw(FEATURES),
        "label_key": _pick(draw, None, "cell_type", "nope"),
        "max_cells": _pick(draw, 200, 1, 0),
        "n_neighbors": _pick(draw, 5, 0, 500),
    }
    return sl.tl.batch_steer, a, {**kw, "key_added": "bs"}


@call("tl.compare_features", _returns(dict))
def _compare_features(a, s, gs, draw):
    kw = {"namespaces": _pick(draw, None, ("BP",), ("XX",)), "annotation_key_a": _pick(draw, "sae_go", "nope")}
    return functools.partial(sl.tl.compare_features, adata_b=_pick(draw, a, s)), a, kw


@call("tl.compare_runs", _returns(pd.DataFrame))
def _compare_runs(a, s, gs, draw):
    kw = {"sae_keys": _pick(draw, ["sae"], [], ["nope"], "sae", ["sae", "sae"]), "min_auroc": _pick(draw, 0.9, 1.5)}
    return sl.tl.compare_runs, a, kw


@call("tl.evaluate", _stored("ev2", "sae"))
def _evaluate(a, s, gs, draw):
    kw = {
        "groupby": draw(GROUPBY),
        "n_seeds": _pick(draw, 2, 1, 0),
        "k": _pick(draw, (1,), (0,), (1, 100)),
        "baselines": _pick(draw, (), ("bogus",)),
    }
    return sl.tl.evaluate, a, {**kw, "fit_kwargs": FIT1, "key_added": "ev2"}


@call("tl.feature_absorption", _stored("abs2", "sae"))
def _feature_absorption(a, s, gs, draw):
    kw = {
        "fine": draw(GROUPBY),
        "coarse": _pick(draw, "lineage", "cell_type", {"type_0": "L"}, "nope"),
        "min_auroc": _pick(draw, 0.8, 0.0, 1.0, 2.0),
    }
    return sl.tl.feature_absorption, a, {**kw, "key_added": "abs2"}


@call("tl.feature_space", _stored("space2", "sae_go"))
def _feature_space(a, s, gs, draw):
    kw = {
        "namespaces": _pick(draw, None, ("BP",), ()),
        "n_neighbors": _pick(draw, 3, 1, 0, 1000),
        "n_top_terms": _pick(draw, 5, 0, -1),
    }
    return sl.tl.feature_space, a, {**kw, "key_added": "space2"}


@call("tl.feature_stability", _stored("stab2", "sae"))
def _feature_stability(a, s, gs, draw):
    kw = {
        "n_seeds": _pick(draw, 2, 1, 0),
        "threshold": _pick(draw, 0.9, 0.0, 1.5, np.nan),
        "groupby": _pick(draw, None, "cell_type", "nope"),
    }
    return sl.tl.feature_stability, a, {**kw, "fit_kwargs": FIT1, "key_added": "stab2"}


@call("tl.sparse_probing", _stored("probe2", "sae"))
def _sparse_probing(a, s, gs, draw):
    kw = {
        "groupby": draw(GROUPBY),
        "k": _pick(draw, (1, 2), (), (0,), (-1,)),
        "baselines": _pick(draw, ("embedding",), (), ("bogus",)),
        "test_size": _pick(draw, 0.3, 0.0, 1.0),
    }
    return sl.tl.sparse_probing, a, {**kw, "key_added": "probe2"}


@call("tl.spurious_removal", _stored("spur2", "sae"))
def _spurious_removal(a, s, gs, draw):
    kw = {
        "groupby": draw(GROUPBY),
        "technical": _pick(draw, "batch", "cell_type", "nope"),
        "features": draw(st.one_of(st.none(), FEATURES)),
        "n_features": _pick(draw, 1, 0, 100),
        "n_random": _pick(draw, 3, 0),
    }
    return sl.tl.spurious_removal, a, {**kw, "key_added": "spur2"}


@call("tl.steer", _returns(anndata.AnnData))
def _steer(a, s, gs, draw):
    kw = {
        "features": draw(FEATURES),
        "cells": _pick(draw, *CELL_SETS),
        "value": _pick(draw, "max", 0.0, -1.0, np.nan, "bogus"),
        "mode": _pick(draw, "set", "add", "knockout", "bogus"),
        "factor": _pick(draw, 1.0, 0.0, np.inf),
    }
    return sl.tl.steer, a, kw


@call("tl.steer_towards", _returns(anndata.AnnData))
def _steer_towards(a, s, gs, draw):
    kw = {
        "source": _pick(draw, *CELL_SETS[1:]),
        "target": _pick(draw, *CELL_SETS[1:]),
        "max_features": _pick(draw, 3, 0, -1),
        "max_cells": _pick(draw, 100, 1, 0),
    }
    return sl.tl.steer_towards, a, kw


@call("tl.term_redundancy")
def _term_redundancy(a, s, gs, draw):
    kw = {"gene_sets": _pick(draw, gs, gs.iloc[:5], "nope"), "min_similarity": _pick(draw, 0.2, 0.0, 1.0, -1.0, np.nan)}
    return sl.tl.term_redundancy, a, kw


@call("pl.alignment", _figure)
def _pl_alignment(a, s, gs, draw):
    kw = {
        "groupby": _pick(draw, None, "cell_type", "nope"),
        "features": draw(st.one_of(st.none(), FEATURES)),
        "metric": _pick(draw, "auroc", "f1", "bogus"),
        "n_features": _pick(draw, 5, 0, -1),
    }
    return sl.pl.alignment, a, {**kw, "return_fig": True}


@call("pl.atlas", lambda out: out.exists() or pytest.fail("atlas returned a path that does not exist"))
def _pl_atlas(a, s, gs, draw):
    kw = {
        "path": _pick(draw, "atlas.html", "nodir/atlas.html", "atlas.txt"),
        "groupby": _pick(draw, None, "cell_type", "nope"),
        "features": draw(st.one_of(st.none(), FEATURES)),
        "max_cells": _pick(draw, 50, 0, -1),
        "max_terms": _pick(draw, 5, 0),
        "basis": _pick(draw, "umap", "emb", "nope"),
    }
    return sl.pl.atlas, a, kw


@call("pl.enrichment", _figure)
def _pl_enrichment(a, s, gs, draw):
    kw = {"features": draw(FEATURES), "n_terms": _pick(draw, 3, 0, -1), "ncols": _pick(draw, 2, 0)}
    return sl.pl.enrichment, a, {**kw, "return_fig": True}


@call("pl.evaluation", _figure)
def _pl_evaluation(a, s, gs, draw):
    kw = {"sae_key": _pick(draw, "sae", "nope"), "evaluation_key": draw(KEYS)}
    return sl.pl.evaluation, a, {**kw, "return_fig": True}


@call("pl.feature_umap", _figure)
def _pl_feature_umap(a, s, gs, draw):
    kw = {
        "space_key": draw(KEYS),
        "concept": _pick(draw, None, "cellular process", "nope"),
        "size": _pick(draw, 10.0, 0.0, -1.0),
    }
    return sl.pl.feature_umap, a, {**kw, "return_fig": True}


@call("pl.specificity", _figure)
def _pl_specificity(a, s, gs, draw):
    kw = {
        "specificity_key": draw(KEYS),
        "kinds": _pick(draw, ("local", "global"), (), ("bogus",)),
        "max_labels": _pick(draw, 40, 0, -1),
    }
    return sl.pl.specificity, a, {**kw, "return_fig": True}


@call("pl.steering", _figure)
def _pl_steering(a, s, gs, draw):
    kw = {
        "kind": _pick(draw, "embedding", "features", "bogus"),
        "max_pairs": _pick(draw, 200, 0, -1),
        "max_features": _pick(draw, 30, 0),
        "steer_key": _pick(draw, "steer", "nope"),
    }
    return sl.pl.steering, _pick(draw, s, s, a), {**kw, "return_fig": True}


@call("pl.training", _figure)
def _pl_training(a, s, gs, draw):
    kw = {"sae_key": _pick(draw, "sae", "nope"), "metrics": _pick(draw, ("loss", "fvu"), (), ("bogus",), "loss")}
    return sl.pl.training, a, {**kw, "return_fig": True}


@call("get.feature_space", _returns(anndata.AnnData))
def _get_feature_space(a, s, gs, draw):
    return sl.get.feature_space, a, {"space_key": draw(KEYS)}


@call("get.sae", lambda out: hasattr(out, "encode") or pytest.fail(f"get.sae returned {type(out).__name__}"))
def _get_sae(a, s, gs, draw):
    return sl.get.sae, a, {"sae_key": draw(KEYS)}


#: calls that refit SAEs or re-annotate: fewer examples (`EXAMPLES["test_expensive_public_call"]`)
EXPENSIVE = {"tl.annotation_null", "tl.evaluate", "tl.feature_stability", "pl.atlas"}


def _examples(names, **kwargs):
    return [pytest.param(n, id=n, **kwargs) for n in names]


@pytest.mark.parametrize("name", _examples(sorted(set(CALLS) - EXPENSIVE)))
@example_budget("test_public_call")
@given(data=st.data())
def test_public_call(analysed, name, data, tmp_path_factory):
    _public_call(analysed, name, data, tmp_path_factory)


@pytest.mark.parametrize("name", _examples(sorted(EXPENSIVE)))
@example_budget("test_expensive_public_call")
@given(data=st.data())
def test_expensive_public_call(analysed, name, data, tmp_path_factory):
    _public_call(analysed, name, data, tmp_path_factory)


def _public_call(analysed, name: str, data, tmp_path_factory) -> None:
    adata, steered, gs = analysed
    make, check = CALLS[name]
    func, target, kwargs = make(_damaged(data.draw, adata), steered, gs, data.draw)
    if "path" in kwargs:
        kwargs["path"] = tmp_path_factory.mktemp("atlas") / kwargs["path"]
    with mock.patch("sclens.tl._feature_space._umap", _tiny_umap):
        out = check_contract(func, target, **kwargs)
    if out is None:
        return
    check(out)
    if name in COUNTS and "counts" in target.layers:  # the same counts dense and CSR: the same result
        other = target.copy()
        counts = other.layers["counts"]
        other.layers["counts"] = counts.toarray() if sparse.issparse(counts) else sparse.csr_matrix(counts)
        again = check_contract(func, other, **kwargs)
        for key, table in COUNTS[name](out).items():
            pd.testing.assert_frame_equal(COUNTS[name](again)[key], table, check_exact=False, rtol=1e-9, obj=key)


def test_term_redundancy_refuses_other_gene_sets_before_touching_a_view(analysed):
    """Found by the long profile: gene sets lacking the kept terms made a view actual before the error."""
    adata, _, gs = analysed
    view = adata[: adata.n_obs // 2]
    assert check_contract(sl.tl.term_redundancy, view, gene_sets=gs.iloc[:5]) is None
    assert view.is_view


def test_atlas_and_null_name_what_is_missing(analysed, tmp_path):
    """Found by the long profile: an atlas path in a missing folder, the null without the annotation's layer."""
    adata, _, gs = analysed
    path = tmp_path / "nodir" / "atlas.html"
    with mock.patch("sclens.pl._atlas.build_payload", side_effect=AssertionError("built before the path was checked")):
        assert check_contract(sl.pl.atlas, adata, path=path) is None
    no_counts = adata.copy()
    del no_counts.layers["counts"]
    assert check_contract(sl.tl.annotation_null, no_counts, gene_sets=gs, nulls=["cells"], n_permutations=1) is None


#: calls that read the counts -> the tables to compare between dense and CSR counts
COUNTS = {"tl.annotation_null": lambda out: {"table": out.uns["sae"]["null2"]["table"]}}


@example_budget("test_sweep_plot")
@given(
    df=st.fixed_dictionaries(
        {
            "l0": st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=4),
            "family": st.lists(st.sampled_from(["X''", "X", None]), min_size=0, max_size=4),
        }
    ),
    x=st.sampled_from(["l0", "nope"]),
    family=st.sampled_from(["X''", None, "nope"]),
)
def test_sweep_plot(df, x, family):
    """``pl.sweep`` takes a table, not an AnnData: the table is unchanged whether it plots or raises."""
    n = min(len(v) for v in df.values())
    table = pd.DataFrame({k: v[:n] for k, v in df.items()})
    table["mean_best_r"] = np.linspace(0, 1, n)
    before = table.copy()
    fig = check_contract(sl.pl.sweep, table, x=x, family=family, return_fig=True)
    if fig is not None:
        _figure(fig)
    pd.testing.assert_frame_equal(table, before)


#: every public function -> the test that draws inputs for it
COVERED = {
    **dict.fromkeys(CALLS, "test_public_call / test_expensive_public_call"),
    "tl.fit_sae": "test_fit_sae_and_encode", "tl.encode": "test_fit_sae_and_encode",
    "tl.feature_specificity": "test_feature_specificity", "tl.annotate_features": "test_annotate_features",
    "tl.contrast": "test_get_and_contrast", "tl.baseline_features": "test_baseline_features",
    "tl.feature_alignment": "test_alignment_and_activation_plot", "get.gene_coverage": "test_get_and_contrast",
    "get.feature_terms": "test_get_and_contrast", "pl.feature_activation": "test_alignment_and_activation_plot",
    "pl.sweep": "test_sweep_plot",
}  # fmt: skip


def test_every_public_function_is_covered():
    """A new public ``tl`` / ``pl`` / ``get`` function fails here until a generated-input test covers it."""
    public = {f"{m}.{name}" for m in ("tl", "pl", "get") for name in getattr(sl, m).__all__}
    assert sorted(public - set(COVERED)) == [], "public functions without a generated-input test"
    assert sorted(set(COVERED) - public) == [], "covered names that are not public (renamed or removed?)"


def test_every_generated_test_has_an_example_budget():
    """Each hypothesis test of this file has its ``ci`` / ``long`` example counts in ``EXAMPLES``."""
    tests = {name for name, f in globals().items() if getattr(f, "is_hypothesis_test", False)}
    assert tests == set(EXAMPLES)
    assert all(0 < ci <= long for ci, long in EXAMPLES.values())
