"""Bad input across the public API: the exact error, a message that names the fix, an unchanged AnnData.

Covers issue 14's cases and the general catalogue (missing keys, NaN/inf, wrong shapes, non-integer or
negative counts, unknown genes, empty groups, zero cells, one cell, wrong types). Every call in
``CASES`` must fail *before* the expensive work starts: training and DE are replaced by a function
that fails the test if it is reached.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import sclens as sl
from sclens._warnings import SclensWarning

# ---------------------------------------------------------------------------------------------------------
# fixtures and the "unchanged" check


@pytest.fixture(scope="module")
def fitted():
    """300 toy cells x 200 genes with a small fitted TopK SAE under ``"sae"`` (read-only: tests copy it)."""
    adata = sl.datasets.toy(n_cells=300, n_genes=200, random_state=0)
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=32, k=4, n_epochs=2, lr=1e-2)
    return adata


@pytest.fixture
def adata(fitted):
    return fitted.copy()


def _same(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and set(a) == set(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, obj=where)
    elif sparse.issparse(a):
        assert sparse.issparse(b) and a.shape == b.shape, where
        np.testing.assert_array_equal(a.toarray(), b.toarray(), err_msg=where)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b), where
    else:
        assert type(a) is type(b) and a == b, where


def assert_unchanged(before: AnnData, after: AnnData) -> None:
    """obs, var, X, obsm / layers keys and values, uns keys and values are all as before."""
    assert after.shape == before.shape
    pd.testing.assert_frame_equal(after.obs, before.obs)
    pd.testing.assert_frame_equal(after.var, before.var)
    _same(before.X, after.X, "X")
    for name in ("obsm", "layers", "uns"):
        _same(dict(getattr(before, name)), dict(getattr(after, name)), name)


@pytest.fixture
def no_expensive_work(monkeypatch):
    """Training and the DE + enrichment runner fail the test if a bad call reaches them."""

    def fail(*args, **kwargs):
        raise AssertionError("the expensive work started before the input was validated")

    monkeypatch.setattr("sclens.sae.train_sae", fail)
    monkeypatch.setattr("sclens.tl._annotation._annotate.run_contrasts", fail)


# ---------------------------------------------------------------------------------------------------------
# the parametrised catalogue: (id, prepare(adata), call(adata), exception type, message fragment)


def _set_obsm(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[AnnData], None]:
    def prep(a: AnnData) -> None:
        a.obsm[name] = make(np.asarray(a.obsm["X_emb"], dtype=np.float32).copy())

    return prep


def _nan_first(x: np.ndarray) -> np.ndarray:
    x[0, 0] = np.nan
    return x


def _inf_first(x: np.ndarray) -> np.ndarray:
    x[3, 1] = np.inf
    return x


def _set(path: tuple[str, ...], value: Any) -> Callable[[AnnData], None]:
    def prep(a: AnnData) -> None:
        d = a.uns
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value

    return prep


def _nan_weight(a: AnnData) -> None:
    w = np.array(a.uns["sae"]["weights"]["W_enc"])
    w[0, 0] = np.nan
    a.uns["sae"]["weights"]["W_enc"] = w


def _nan_activation(a: AnnData) -> None:
    x = a.obsm["X_sae"].copy()
    x.data[0] = np.nan
    a.obsm["X_sae"] = x


def _counts(make: Callable[[np.ndarray], np.ndarray]) -> Callable[[AnnData], None]:
    def prep(a: AnnData) -> None:
        c = a.layers["counts"]
        c = c.toarray() if sparse.issparse(c) else np.array(c)
        a.layers["counts"] = make(c.astype(np.float64))

    return prep


def _half(c: np.ndarray) -> np.ndarray:
    return c + 0.5


def _negative(c: np.ndarray) -> np.ndarray:
    c[0, 0] = -1
    return c


def _nan_count(c: np.ndarray) -> np.ndarray:
    c[1, 1] = np.nan
    return c


def _duplicate_genes(a: AnnData) -> None:
    names = a.var_names.to_numpy().copy()
    names[1] = names[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's own "not unique" warning
        a.var_names = names


def _obs(name: str, make: Callable[[AnnData], Any]) -> Callable[[AnnData], None]:
    def prep(a: AnnData) -> None:
        a.obs[name] = make(a)

    return prep


def _one_group_with_empty_categories(a: AnnData) -> pd.Categorical:
    return pd.Categorical(np.where(np.arange(a.n_obs) < 100, "a", None), categories=["a", "b", "c"])


def _with_missing(a: AnnData) -> pd.Categorical:
    labels = a.obs["cell_type"].astype(str).to_numpy().astype(object)
    labels[:30] = None
    return pd.Categorical(labels)


def _one_cell_group(a: AnnData) -> np.ndarray:
    return np.where(np.arange(a.n_obs) == 0, "solo", "rest_of_cells")


def _gs(a: AnnData) -> pd.DataFrame:
    return a.uns["toy"]["gene_sets"]


def _annotate(**kw: Any) -> Callable[[AnnData], Any]:
    return lambda a: sl.tl.annotate_features(a, **{"gene_sets": _gs(a), "layer": "counts", **kw})


def _contrast(**kw: Any) -> Callable[[AnnData], Any]:
    return lambda a: sl.tl.contrast(a, **{"gene_sets": _gs(a), "layer": "counts", **kw})


def _noop(a: AnnData) -> None:
    return None


FIT = {"n_features": 32, "k": 4, "n_epochs": 1}

CASES = [
    # fit_sae: missing keys, wrong types, NaN / inf, constant or badly scaled embedding, zero / one cell
    (
        "fit-missing-rep",
        _noop,
        lambda a: sl.tl.fit_sae(a, use_rep="X_scVI", **FIT),
        KeyError,
        "Compute an embedding first",
    ),
    (
        "fit-rep-type",
        _noop,
        lambda a: sl.tl.fit_sae(a, use_rep=3, **FIT),
        TypeError,
        "use_rep must be a non-empty string",
    ),
    (
        "fit-nan",
        _set_obsm("X_bad", _nan_first),
        lambda a: sl.tl.fit_sae(a, use_rep="X_bad", **FIT),
        ValueError,
        "NaN or infinite",
    ),
    (
        "fit-inf",
        _set_obsm("X_bad", _inf_first),
        lambda a: sl.tl.fit_sae(a, use_rep="X_bad", **FIT),
        ValueError,
        "remove or impute",
    ),
    (
        "fit-constant",
        _set_obsm("X_c", np.ones_like),
        lambda a: sl.tl.fit_sae(a, use_rep="X_c", **FIT),
        ValueError,
        "is constant",
    ),
    (
        "fit-denormal-scale",
        _set_obsm("X_t", lambda x: x * 1e-40),
        lambda a: sl.tl.fit_sae(a, use_rep="X_t", **FIT),
        ValueError,
        "below float32's smallest normal number",
    ),
    (
        "fit-beyond-float32",
        _set_obsm("X_t", lambda x: x.astype(np.float64) * 1e39),
        lambda a: sl.tl.fit_sae(a, use_rep="X_t", **FIT),
        ValueError,
        "beyond what float32 training can hold",
    ),
    ("fit-zero-cells", _noop, lambda a: sl.tl.fit_sae(a[:0], use_rep="X_emb", **FIT), ValueError, "at least 2 cells"),
    ("fit-one-cell", _noop, lambda a: sl.tl.fit_sae(a[:1], use_rep="X_emb", **FIT), ValueError, "at least 2 cells"),
    (
        "fit-text-embedding",
        _set_obsm("X_s", lambda x: x.astype(str)),
        lambda a: sl.tl.fit_sae(a, use_rep="X_s", **FIT),
        TypeError,
        "real-valued",
    ),
    (
        "fit-key-slash",
        _noop,
        lambda a: sl.tl.fit_sae(a, use_rep="X_emb", key_added="a/b", **FIT),
        ValueError,
        "without '/'",
    ),
    (
        "fit-bad-device",
        _noop,
        lambda a: sl.tl.fit_sae(a, use_rep="X_emb", device="gpu0", **FIT),
        ValueError,
        "use 'cpu', 'cuda'",
    ),
    (
        "fit-device-type",
        _noop,
        lambda a: sl.tl.fit_sae(a, use_rep="X_emb", device=0, **FIT),
        TypeError,
        "device must be a string",
    ),
    # encode: wrong shape, wrong type, missing run
    (
        "encode-width",
        _set_obsm("X_wide", lambda x: np.hstack([x, x])),
        lambda a: sl.tl.encode(a, use_rep="X_wide"),
        ValueError,
        "encode the same embedding",
    ),
    ("encode-sae-type", _noop, lambda a: sl.tl.encode(a, sae=5), TypeError, "sae must be None"),
    ("encode-no-run", _noop, lambda a: sl.tl.encode(a, sae_key="other"), KeyError, "key_added='other'"),
    # case 3: damaged or mismatched weights stored in uns
    ("get-sae-nan-weight", _nan_weight, lambda a: sl.get.sae(a), ValueError, "NaN or infinite value(s)"),
    (
        "get-sae-extra-threshold",
        _set(("sae", "weights", "threshold"), np.float32(0.5)),
        lambda a: sl.get.sae(a),
        ValueError,
        "another architecture",
    ),
    (
        "get-sae-weight-shape",
        _set(("sae", "weights", "W_dec"), np.zeros((3, 3), np.float32)),
        lambda a: sl.get.sae(a),
        ValueError,
        "needs (32, 16)",
    ),
    (
        "get-sae-weights-type",
        _set(("sae", "weights"), "W"),
        lambda a: sl.get.sae(a),
        TypeError,
        "refit with `sl.tl.fit_sae`",
    ),
    # feature_specificity: case 6 and 13, missing keys, empty groups, NaN activations, wrong types
    (
        "spec-missing-col",
        _noop,
        lambda a: sl.tl.feature_specificity(a, groupby="leiden"),
        KeyError,
        "available columns",
    ),
    ("spec-continuous", _noop, lambda a: sl.tl.feature_specificity(a, groupby="n_counts"), ValueError, "pd.cut"),
    (
        "spec-empty-groups",
        _obs("g", _one_group_with_empty_categories),
        lambda a: sl.tl.feature_specificity(a, groupby="g"),
        ValueError,
        "at least two",
    ),
    (
        "spec-groupby-type",
        _noop,
        lambda a: sl.tl.feature_specificity(a, groupby=["cell_type"]),
        TypeError,
        "name of an `adata.obs` column",
    ),
    (
        "spec-uns-not-dict",
        _set(("sae",), "oops"),
        lambda a: sl.tl.feature_specificity(a, groupby="cell_type"),
        TypeError,
        "Refit with `sl.tl.fit_sae",
    ),
    (
        "spec-no-run",
        _noop,
        lambda a: sl.tl.feature_specificity(a, groupby="cell_type", sae_key="nope"),
        KeyError,
        "run `sl.tl.fit_sae",
    ),
    (
        "spec-nan-activation",
        _nan_activation,
        lambda a: sl.tl.feature_specificity(a, groupby="cell_type"),
        ValueError,
        "Re-encode",
    ),
    (
        "spec-one-cell",
        _noop,
        lambda a: sl.tl.feature_specificity(a[:1], groupby="cell_type"),
        ValueError,
        "at least two",
    ),
    (
        "spec-zero-cells",
        _noop,
        lambda a: sl.tl.feature_specificity(a[:0], groupby="cell_type"),
        ValueError,
        "at least two",
    ),
    (
        "spec-alpha",
        _noop,
        lambda a: sl.tl.feature_specificity(a, groupby="cell_type", alpha=2.0),
        ValueError,
        "alpha must be between",
    ),
    # annotate_features: cases 5, 8, 11, 13 and counts / genes / features / groups
    ("annot-return-de", _noop, _annotate(return_de=[999]), ValueError, "add them to `features=`"),
    ("annot-return-de-type", _noop, _annotate(return_de=["x"]), TypeError, "return_de must be feature numbers"),
    ("annot-duplicate-genes", _duplicate_genes, _annotate(), ValueError, "var_names_make_unique()"),
    ("annot-sets-too-small", _noop, _annotate(min_size=1000), ValueError, "Lower `min_size`"),
    ("annot-sets-too-big", _noop, _annotate(max_size=1), ValueError, "raise `max_size`"),
    ("annot-unknown-genes", _noop, _annotate(gene_sets={"set": ["NOPE1", "NOPE2"]}), ValueError, "same identifiers"),
    ("annot-gene-sets-type", _noop, _annotate(gene_sets=42), TypeError, "a dict of gene lists, or a GMT path"),
    ("annot-non-integer", _counts(_half), _annotate(), ValueError, "integer counts"),
    ("annot-negative", _counts(_negative), _annotate(), ValueError, "non-negative"),
    ("annot-nan-counts", _counts(_nan_count), _annotate(), ValueError, "must be finite"),
    ("annot-missing-layer", _noop, _annotate(layer="raw"), KeyError, "available layers"),
    ("annot-features-type", _noop, _annotate(features="abc"), TypeError, "features must be a feature number"),
    ("annot-unknown-feature", _noop, _annotate(features=[999]), ValueError, "feature 999 is out of range"),
    ("annot-key-added-is-run", _noop, _annotate(key_added="sae"), ValueError, "would overwrite the SAE run"),
    ("annot-uns-not-dict", _set(("sae",), ["x"]), _annotate(), TypeError, "not an SAE run"),
    ("annot-within-empty", _noop, _annotate(cells={"cell_type": "nope"}), ValueError, "not found"),
    ("annot-zero-cells", _noop, lambda a: _annotate()(a[:0]), ValueError, "so it needs at least 4"),
    ("annot-one-cell", _noop, lambda a: _annotate()(a[:1]), ValueError, "adata has 1 cell(s)"),
    (
        "contrast-zero-cells",
        _noop,
        lambda a: _contrast(groupby="cell_type", groups=_ct(a, 0))(a[:0]),
        ValueError,
        "not found",
    ),
    ("annot-quantile", _noop, _annotate(high_quantile=1.5), ValueError, "high_quantile must be in (0, 1)"),
    # contrast: case 7, one cell, empty group, overlap, continuous column
    (
        "contrast-missing-label",
        _obs("g", _with_missing),
        _contrast(groupby="g", groups="nan"),
        ValueError,
        "missing label belong to no group",
    ),
    (
        "contrast-one-cell",
        _obs("g", _one_cell_group),
        _contrast(groupby="g", groups="solo"),
        ValueError,
        "at least 2 are needed",
    ),
    (
        "contrast-empty-group",
        _obs("g", _one_group_with_empty_categories),
        _contrast(groupby="g", groups="b"),
        ValueError,
        "not found",
    ),
    (
        "contrast-overlap",
        _noop,
        lambda a: _contrast(groupby="cell_type", groups=_ct(a, 0), reference=[_ct(a, 0), _ct(a, 1)])(a),
        ValueError,
        "choose disjoint groups",
    ),
    ("contrast-continuous", _noop, _contrast(groupby="n_counts", groups="1.0"), ValueError, "bin it first"),
    # readers: case 14 and missing results
    ("terms-feature-type", _noop, lambda a: sl.get.feature_terms(a, features="abc"), TypeError, "an integer"),
    (
        "terms-no-annotation",
        _noop,
        lambda a: sl.get.feature_terms(a, features=0),
        KeyError,
        "run `sl.tl.annotate_features",
    ),
    ("space-no-annotation", _noop, lambda a: sl.tl.feature_space(a), KeyError, "run `sl.tl.annotate_features"),
    ("get-space-missing", _noop, lambda a: sl.get.feature_space(a), KeyError, "run `sl.tl.feature_space"),
    # case 17 and the simulation autoencoder
    (
        "ae-bad-device",
        _noop,
        lambda a: sl.sim.fit_autoencoder(a, device="tpu9", n_epochs=1),
        ValueError,
        "use 'cpu', 'cuda'",
    ),
]


def _ct(a: AnnData, i: int) -> str:
    return str(a.obs["cell_type"].cat.categories[i])


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
@pytest.mark.parametrize(("prepare", "call", "exc", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(adata, no_expensive_work, prepare, call, exc, fragment):
    prepare(adata)
    before = adata.copy()
    with pytest.raises(exc, match=_literal(fragment)):
        call(adata)
    assert_unchanged(before, adata)


def _literal(fragment: str) -> str:
    import re

    return re.escape(fragment)


# ---------------------------------------------------------------------------------------------------------
# case 1: a view never changes its parent


@pytest.mark.parametrize("writer", ["feature_specificity", "annotate_features", "encode", "fit_sae"])
def test_view_leaves_parent_unchanged(adata, writer):
    from anndata import ImplicitModificationWarning

    sl.tl.feature_specificity(adata, groupby="cell_type")
    before = adata.copy()
    view = adata[adata.obs["cell_type"] != _ct(adata, 0)]
    calls = {
        "feature_specificity": lambda v: sl.tl.feature_specificity(v, groupby="cell_type"),
        "annotate_features": lambda v: sl.tl.annotate_features(
            v, gene_sets=_gs(v), layer="counts", features=[0, 1, 2], high_quantile=0.9, min_high=3, min_size=2
        ),
        "encode": lambda v: sl.tl.encode(v, sae=sl.get.sae(adata), key_added="enc", use_rep="X_emb"),
        "fit_sae": lambda v: sl.tl.fit_sae(v, use_rep="X_emb", n_features=16, k=2, n_epochs=1, key_added="refit"),
    }
    with pytest.warns(ImplicitModificationWarning, match="making it an actual AnnData"):
        calls[writer](view)
    assert not view.is_view
    assert_unchanged(before, adata)
    key = {"encode": "enc", "fit_sae": "refit"}.get(writer)
    if key is not None:
        assert view.obsm[f"X_{key}"].shape[0] == view.n_obs < adata.n_obs
    if writer == "annotate_features":
        assert "sae_go" in view.uns and "n_terms" in view.uns["sae"]["features"]
    if writer == "feature_specificity":  # 3 groups in the view vs 4 in the parent
        assert (
            view.uns["sae"]["specificity"]["group_means"].shape[0]
            == adata.uns["sae"]["specificity"]["group_means"].shape[0] - 1
        )


# ---------------------------------------------------------------------------------------------------------
# case 2: run ids; derived results are dropped on refit and refused when stale


@pytest.fixture(scope="module")
def annotated(fitted):
    adata = fitted.copy()
    sl.tl.feature_specificity(adata, groupby="cell_type")
    sl.tl.annotate_features(adata, gene_sets=_gs(adata), layer="counts", high_quantile=0.9, min_high=3, min_size=2)
    return adata


def test_run_id_recorded_and_survives_h5ad(annotated, tmp_path):
    rid = annotated.uns["sae"]["run_id"]
    assert isinstance(rid, str) and len(rid) == 32
    assert annotated.uns["sae_go"]["params"]["sae_run_id"] == rid
    assert annotated.uns["sae"]["specificity"]["params"]["sae_run_id"] == rid
    annotated.write_h5ad(tmp_path / "a.h5ad")
    back = anndata.read_h5ad(tmp_path / "a.h5ad")
    assert back.uns["sae"]["run_id"] == rid
    assert len(sl.get.feature_terms(back, features=int(back.uns["sae_go"]["results"]["feature"].iloc[0]))) > 0


def test_refit_drops_derived_results(annotated):
    adata = annotated.copy()
    old = adata.uns["sae"]["run_id"]
    with pytest.warns(SclensWarning, match=r"dropped: uns\['sae'\]\['specificity'\].*uns\['sae_go'\]"):
        sl.tl.fit_sae(adata, use_rep="X_emb", n_features=16, k=2, n_epochs=1)
    assert "sae_go" not in adata.uns and "specificity" not in adata.uns["sae"]
    assert adata.uns["sae"]["run_id"] != old
    with pytest.raises(KeyError, match="annotate_features"):
        sl.get.feature_terms(adata, features=31)


def test_stale_results_refused(annotated):
    adata = annotated.copy()
    stale = adata.uns["sae_go"]
    with pytest.warns(SclensWarning, match="dropped"):
        sl.tl.fit_sae(adata, use_rep="X_emb", n_features=16, k=2, n_epochs=1)
    adata.uns["sae_go"] = stale  # e.g. copied back from another object
    with pytest.raises(ValueError, match=r"stale\. Re-run `sl.tl.annotate_features"):
        sl.get.feature_terms(adata, features=0)
    with pytest.raises(ValueError, match="stale"):
        sl.tl.feature_space(adata)
    stale_space = {"params": {"sae_run_id": stale["params"]["sae_run_id"]}}
    adata.uns["sae_go"] = {**stale, "feature_space": stale_space}
    with pytest.raises(ValueError, match=r"stale\. Re-run `sl.tl.annotate_features"):
        sl.get.feature_space(adata)
    with pytest.raises(ValueError, match="stale"):
        sl.pl.feature_umap(adata, show=False)


def test_encode_keeps_run_id_only_for_the_same_model(annotated):
    adata = annotated.copy()
    rid = adata.uns["sae"]["run_id"]
    sl.tl.encode(adata)  # same model, same embedding: the same run, derived results stay
    sl.tl.encode(adata, sae=sl.get.sae(adata), use_rep="X_emb")
    assert adata.uns["sae"]["run_id"] == rid and "sae_go" in adata.uns
    assert "specificity" in adata.uns["sae"] and "n_terms" in adata.uns["sae"]["features"]
    other = sl.tl.fit_sae(adata, use_rep="X_emb", n_features=16, k=2, n_epochs=1, key_added="other", copy=True)
    with pytest.warns(SclensWarning, match=r"uns\['sae_go'\]"):
        sl.tl.encode(adata, sae=sl.get.sae(other, sae_key="other"), key_added="sae")
    assert adata.uns["sae"]["run_id"] not in (rid, other.uns["other"]["run_id"])


# ---------------------------------------------------------------------------------------------------------
# cases 7 and 9


def test_contrast_leaves_missing_labels_out(adata, caplog):
    labels = _with_missing(adata)
    adata.obs["g"] = labels
    group = str(labels.categories[0])
    n_group = int((labels == group).sum())
    n_labelled = int((~pd.isna(labels)).sum())
    with caplog.at_level("WARNING", logger="sclens"):
        sl.tl.contrast(adata, groupby="g", groups=group, gene_sets=_gs(adata), layer="counts", min_size=2)
    params = adata.uns["contrast"]["params"]
    assert params["n_group"] == n_group and params["n_reference"] == n_labelled - n_group
    assert "30 cell(s) with a missing `g` label are left out" in caplog.text


def test_encode_other_embedding_warns(adata):
    adata.obsm["X_other"] = adata.obsm["X_emb"][::-1].copy()
    with pytest.warns(SclensWarning, match=r"trained on `obsm\['X_emb'\]` but is applied to `obsm\['X_other'\]`"):
        sl.tl.encode(adata, use_rep="X_other", key_added="sae")


def test_fit_autoencoder_device_auto(adata):
    sl.sim.fit_autoencoder(adata, device="auto", n_epochs=1, n_latent=2, hidden=(8,))
    assert adata.obsm["X_ae"].shape == (adata.n_obs, 2)


# ---------------------------------------------------------------------------------------------------------
# cases 3 and 10: damaged or mismatched SAE files


@pytest.fixture
def saved(tmp_path):
    import torch

    from sclens.sae import SAEConfig, SparseAutoencoder, save_sae

    torch.manual_seed(0)
    model = SparseAutoencoder(SAEConfig(input_dim=4, n_features=8, architecture="topk", k=2), seed=0)
    return save_sae(model, tmp_path / "m")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_cfg(**changes):
    def edit(path):
        import json

        cfg = json.loads(path.read_text())
        path.write_text(json.dumps({**cfg, **changes}))

    return edit


def _nan_saved_weight(path):
    from safetensors.torch import load_file, save_file

    from sclens.sae._io import _safe_metadata

    state = load_file(str(path))
    state["W_enc"][0, 0] = float("nan")
    save_file(state, str(path), metadata=_safe_metadata(path))


DAMAGE = [
    ("weights-truncated", "sae.safetensors", _truncate, "sae.safetensors is damaged, truncated"),
    ("weights-empty", "sae.safetensors", lambda p: p.write_bytes(b""), "sae.safetensors is damaged, truncated"),
    (
        "weights-random",
        "sae.safetensors",
        lambda p: p.write_bytes(np.random.default_rng(0).bytes(300)),
        "not a safetensors file",
    ),
    ("weights-nan", "sae.safetensors", _nan_saved_weight, "holds 1 NaN or infinite value(s)"),
    ("cfg-invalid-json", "cfg.json", lambda p: p.write_text("{not json"), "cfg.json is damaged: not valid JSON"),
    ("cfg-binary", "cfg.json", lambda p: p.write_bytes(b"\xff\xfe\x00"), "cfg.json is damaged"),
    ("cfg-list", "cfg.json", lambda p: p.write_text("[1, 2]"), "expected a JSON object"),
    ("cfg-says-relu", "cfg.json", _edit_cfg(architecture="relu"), "says architecture='relu' but"),
    ("cfg-other-k", "cfg.json", _edit_cfg(k=5), "says k=5 but"),
    ("cfg-batchtopk", "cfg.json", _edit_cfg(architecture="batchtopk"), "the config does not belong to these weights"),
    ("cfg-bad-field", "cfg.json", _edit_cfg(n_features=-3), "holds an invalid SAE config"),
]


@pytest.mark.parametrize(("name", "damage", "fragment"), [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_sae_files(saved, name, damage, fragment):
    from sclens.sae import load_sae

    damage(saved / name)
    with pytest.raises(ValueError, match=_literal(fragment)) as info:
        load_sae(saved)
    assert str(saved) in str(info.value)  # the error names the file


def test_saved_sae_loads(saved):
    from sclens.sae import load_sae

    assert load_sae(saved).cfg.architecture == "topk"


# ---------------------------------------------------------------------------------------------------------
# case 15: unreadable gene-set and GO files name the file and what is wrong


def _gz_corrupt(path):
    import gzip

    data = gzip.compress("".join(f"set{i}\tdesc\tA\tB\n" for i in range(2000)).encode())
    path.write_bytes(data[: len(data) // 2])


FILES = [
    (
        "latin1",
        "s.gmt",
        lambda p: p.write_bytes("set\tcaf\u00e9\tA\tB\n".encode("latin-1")),
        ValueError,
        "is not UTF-8 text",
    ),
    ("corrupt-gzip", "s.gmt.gz", _gz_corrupt, ValueError, "corrupt or truncated gzip"),
    ("random-bytes", "s.gmt", lambda p: p.write_bytes(np.random.default_rng(1).bytes(2000)), ValueError, "s.gmt"),
    ("directory", "folder", lambda p: p.mkdir(), IsADirectoryError, "is a directory"),
]


@pytest.mark.parametrize(("name", "make", "exc", "fragment"), [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_unreadable_gmt(tmp_path, name, make, exc, fragment):
    make(tmp_path / name)
    with pytest.raises(exc, match=_literal(fragment)) as info:
        sl.datasets.read_gmt(tmp_path / name)
    assert name in str(info.value)


def test_bioconductor_not_sqlite(tmp_path):
    bad = tmp_path / "GO.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=r"GO.sqlite.*is not a GO.db SQLite database"):
        sl.datasets.read_bioconductor_go(bad, bad)


# ---------------------------------------------------------------------------------------------------------
# case 16: unpinned GO downloads are verified on reuse; damaged cached files are removed


@pytest.fixture
def unpinned_mirror(tmp_path, monkeypatch):
    import gzip
    import shutil
    from pathlib import Path

    from sclens.datasets import _download, _go

    data = Path(__file__).parent / "data"
    server = tmp_path / "server"
    server.mkdir()
    shutil.copy(data / "mini.obo", server / "go-basic.obo")
    with open(data / "mini.gaf", "rb") as src, gzip.open(server / "goa_human.gaf.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    files = {n: _download.FileSpec((server / n).as_uri(), None) for n in ("go-basic.obo", "goa_human.gaf.gz")}
    monkeypatch.setitem(_download.GO_RELEASES, "2099-02-02", files)
    monkeypatch.setenv("SCLENS_CACHE", str(tmp_path / "cache"))

    def clear():
        _download.load_go_release.cache_clear()
        _download.load_go_ontology.cache_clear()
        _go._cached_gene_sets.cache_clear()

    clear()
    yield server, clear
    clear()


def test_unpinned_download_recorded_and_verified(unpinned_mirror):
    import hashlib

    from sclens.datasets import _download

    server, _ = unpinned_mirror
    path = _download.fetch_go_file("2099-02-02", "go-basic.obo")
    recorded = (path.parent / "go-basic.obo.sha256").read_text().strip()
    assert recorded == hashlib.sha256((server / "go-basic.obo").read_bytes()).hexdigest()
    assert _download.fetch_go_file("2099-02-02", "go-basic.obo") == path  # reuse verifies and passes
    path.write_text(path.read_text() + "tampered\n")
    with pytest.raises(ValueError, match=r"changed since it was downloaded.*Run the call again") as info:
        _download.fetch_go_file("2099-02-02", "go-basic.obo")
    assert str(path) in str(info.value) and not path.exists()
    assert _download.fetch_go_file("2099-02-02", "go-basic.obo").read_bytes() == (server / "go-basic.obo").read_bytes()


def test_damaged_download_removed_from_cache(unpinned_mirror):
    from sclens.datasets import _download

    server, clear = unpinned_mirror
    good = (server / "go-basic.obo").read_bytes()
    (server / "go-basic.obo").write_text("<html>\n<body>502 Bad Gateway</body>\n</html>\n")
    with pytest.raises(ValueError, match=r"could not be read.*removed from the cache") as info:
        _download.load_go_ontology(release="2099-02-02")
    cached = _download.cache_dir() / "2099-02-02" / "go-basic.obo"
    assert str(cached) in str(info.value) and not cached.exists()
    (server / "go-basic.obo").write_bytes(good)  # the server is fixed: the same call now works
    clear()
    assert len(_download.load_go_ontology(release="2099-02-02").terms) > 0
