import anndata as ad
import numpy as np
import pytest
import torch
from scipy import sparse

import sclens as sl

FAST = {"n_features": 64, "k": 4, "n_epochs": 2, "batch_size": 128, "lr": 1e-2}


@pytest.fixture(scope="module")
def toy():
    return sl.datasets.toy(n_cells=400, n_genes=200, random_state=0)


@pytest.fixture(scope="module")
def fitted(toy):
    adata = toy.copy()
    sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)
    return adata


def _snapshot(adata):
    return (sorted(adata.obsm.keys()), sorted(adata.uns.keys()), adata.shape)


def test_storage_contract(fitted):
    z = fitted.obsm["X_sae"]
    assert sparse.isspmatrix_csr(z) or isinstance(z, sparse.csr_array)
    assert z.dtype == np.float32 and z.shape == (fitted.n_obs, 64) and z.min() >= 0
    np.testing.assert_allclose((z > 0).sum(1).mean(), 4.0)
    run = fitted.uns["sae"]
    p = run["params"]
    assert (p["architecture"], p["n_features"], p["use_rep"], p["input_dim"], p["k"]) == ("topk", 64, "X_emb", 16, 4)
    assert {"lr", "n_epochs", "batch_size", "random_state", "l1_weight"} <= set(p)
    assert not any(v is None for v in p.values())
    m = run["metrics"]
    assert 0 < m["fvu"] < 1 and m["l0"] == pytest.approx(4.0) and m["n_live"] == round(64 * (1 - m["dead_fraction"]))
    assert len(m["train_loss"]) == len(m["train_fvu"]) == len(m["val_fvu"]) == 2
    w = run["weights"]
    assert w["W_enc"].shape == (16, 64) and w["W_dec"].shape == (64, 16)
    assert w["b_enc"].shape == (64,) and w["b_dec"].shape == (16,)
    f = run["features"]
    assert list(f.index[:3]) == ["0", "1", "2"] and len(f) == 64
    np.testing.assert_allclose(f["frequency"].to_numpy(), np.asarray((z > 0).mean(0)).ravel())
    assert set(f["kind"]) <= {"live", "dead"} and (f["kind"] == "dead").sum() == 64 - m["n_live"]


def test_h5ad_roundtrip_rebuilds_identical_model(fitted, tmp_path):
    fitted.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    sae = sl.get.sae(back)
    assert not sae.training
    z = sae.encode(torch.from_numpy(np.asarray(back.obsm["X_emb"], dtype=np.float32))).detach().numpy()
    np.testing.assert_array_equal(z, fitted.obsm["X_sae"].toarray())
    np.testing.assert_array_equal(back.obsm["X_sae"].toarray(), fitted.obsm["X_sae"].toarray())
    sl.tl.encode(back, key_added="sae")
    np.testing.assert_array_equal(back.obsm["X_sae"].toarray(), fitted.obsm["X_sae"].toarray())
    assert back.uns["sae"]["params"]["source"] == "encode"
    assert len(back.uns["sae"]["metrics"]["train_loss"]) == 2  # curves kept


def test_same_seed_identical_activations(toy):
    a, b, c = (sl.tl.fit_sae(toy, use_rep="X_emb", random_state=s, copy=True, **FAST) for s in (1, 1, 2))
    assert (a.obsm["X_sae"] != b.obsm["X_sae"]).nnz == 0
    assert (a.obsm["X_sae"] != c.obsm["X_sae"]).nnz > 0
    assert "X_sae" not in toy.obsm  # copy=True leaves the input alone


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_int_and_float64_embeddings(toy, dtype):
    adata = toy.copy()
    adata.obsm["X_int"] = np.round(adata.obsm["X_emb"] * 10).astype(dtype)
    sl.tl.fit_sae(adata, use_rep="X_int", key_added="sae_int", **FAST)
    assert adata.obsm["X_sae_int"].dtype == np.float32 and "sae_int" in adata.uns


def test_encode_query_with_reference(fitted, toy):
    query = toy[:50].copy()
    sl.tl.encode(query, sae=fitted)
    np.testing.assert_array_equal(query.obsm["X_sae"].toarray(), fitted.obsm["X_sae"][:50].toarray())
    query2 = toy[:50].copy()
    sl.tl.encode(query2, sae=sl.get.sae(fitted), use_rep="X_emb")
    np.testing.assert_array_equal(query2.obsm["X_sae"].toarray(), query.obsm["X_sae"].toarray())
    # a bare model re-encodes cells that already hold a run under `key`: its use_rep is reused
    sl.tl.encode(query2, sae=sl.get.sae(fitted))
    np.testing.assert_array_equal(query2.obsm["X_sae"].toarray(), query.obsm["X_sae"].toarray())


def test_save_dir_then_encode(fitted, toy, tmp_path):
    from sclens.sae import save_sae

    save_sae(sl.get.sae(fitted), tmp_path / "sae")
    query = toy[:30].copy()
    sl.tl.encode(query, sae=str(tmp_path / "sae"), use_rep="X_emb")
    np.testing.assert_array_equal(query.obsm["X_sae"].toarray(), fitted.obsm["X_sae"][:30].toarray())


def test_mudata_modality(toy):
    import warnings

    import mudata as md

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # mudata's own pull_on_update notice
        mdata = md.MuData({"rna": toy.copy()})
    sl.tl.fit_sae(mdata, use_rep="rna:X_emb", **FAST)
    assert mdata.obsm["X_sae"].shape == (toy.n_obs, 64)
    assert mdata.uns["sae"]["params"]["use_rep"] == "rna:X_emb"
    assert sl.get.sae(mdata).input_dim == 16


def _nonfinite(adata, value):
    x = adata.obsm["X_emb"].copy()
    x[3, 2] = value
    return _bad(adata, "X_emb", x)


def _bad(adata, key, value):
    adata = adata.copy()
    adata.obsm[key] = value
    return adata


@pytest.mark.parametrize(
    ("make", "kwargs", "err", "match"),
    [
        (
            lambda a: a,
            {"use_rep": "X_scVI"},
            KeyError,
            r"`adata.obsm\['X_scVI'\]` not found; available keys: \[.*'X_emb'",
        ),
        (lambda a: _nonfinite(a, np.nan), {}, ValueError, r"NaN or infinite values in 1 cell"),
        (lambda a: _nonfinite(a, -np.inf), {}, ValueError, r"NaN or infinite values in 1 cell"),
        (lambda a: a[:1].copy(), {}, ValueError, r"has 1 row\(s\); an SAE needs at least 2 cells"),
        (lambda a: a[:0].copy(), {}, ValueError, r"has 0 row\(s\)"),
        (lambda a: a, {"k": 64}, ValueError, r"k must satisfy 1 <= k < n_features"),
        (lambda a: a, {"n_features": 0}, ValueError, r"n_features must be >= 1"),
        (lambda a: a, {"architecture": "gated"}, ValueError, r"Unknown SAE architecture 'gated'; choose one of"),
    ],
)
def test_bad_input_leaves_adata_unchanged(toy, make, kwargs, err, match):
    adata = make(toy)
    before = _snapshot(adata)
    kw = {**FAST, "use_rep": "X_emb", **kwargs}
    with pytest.raises(err, match=match):
        sl.tl.fit_sae(adata, **kw)
    assert _snapshot(adata) == before


def test_encode_other_width_raises(fitted, toy):
    query = toy[:20].copy()
    query.obsm["X_wide"] = np.zeros((20, 20), dtype=np.float32)
    before = _snapshot(query)
    with pytest.raises(ValueError, match=r"trained on 16-dimensional inputs but `obsm\['X_wide'\]` has 20 columns"):
        sl.tl.encode(query, sae=fitted, use_rep="X_wide")
    assert _snapshot(query) == before
    with pytest.raises(KeyError, match=r"`adata.uns\['sae'\]` not found.*Run `sl.tl.fit_sae"):
        sl.tl.encode(query)


def _assert_same(a, b, path="uns"):
    """Recursive exact equality; no None and no Python objects anywhere."""
    import pandas as pd

    assert a is not None, path
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_index_type=False)
    else:
        assert isinstance(a, str | int | float | np.number | np.ndarray | np.bool_ | bool), (path, type(a))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_every_uns_entry_survives_h5ad(toy, tmp_path, architecture):
    adata = toy.copy()
    sl.tl.fit_sae(adata, use_rep="X_emb", **{**FAST, "n_epochs": 1}, architecture=architecture)
    adata.write_h5ad(tmp_path / "a.h5ad")
    _assert_same(adata.uns["sae"], ad.read_h5ad(tmp_path / "a.h5ad").uns["sae"])


def test_heldout_fvu_uses_heldout_mean(fitted):
    # FVU = summed squared residuals / summed squared deviations from the mean of the same (held-out) cells
    m = fitted.uns["sae"]["metrics"]
    assert m["fvu"] == pytest.approx(m["val_fvu"][-1], rel=1e-4)
    assert fitted.uns["sae"]["params"]["fvu_on"] == "validation"


@pytest.mark.parametrize(("fn", "kw"), [("fit_sae", {"key_added": None}), ("encode", {"key_added": "a/b"})])
def test_bad_key_rejected_before_writing(fitted, fn, kw):
    adata = fitted.copy()
    before = _snapshot(adata)
    extra = {"use_rep": "X_emb", **FAST} if fn == "fit_sae" else {"sae": fitted}
    with pytest.raises(ValueError, match=r"must be a non-empty string without '/'"):
        getattr(sl.tl, fn)(adata, **extra, **kw)
    assert _snapshot(adata) == before


def test_nan_leaves_existing_run_untouched(fitted):
    adata = fitted.copy()
    run, acts = adata.uns["sae"], adata.obsm["X_sae"]
    emb = adata.obsm["X_emb"].copy()
    emb[-1, 0] = np.nan  # one cell, wherever it falls (training or held-out)
    adata.obsm["X_emb"] = emb
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 cell"):
        sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)
    assert adata.uns["sae"] is run and adata.obsm["X_sae"] is acts
    _assert_same(adata.uns["sae"], fitted.uns["sae"])


@pytest.fixture(scope="module")
def toy_2500():
    return sl.datasets.toy(n_cells=2500, n_genes=200, random_state=0)


@pytest.fixture
def small_chunks(monkeypatch):
    """Training reads max(batch_size, 100) rows of a 16-dim embedding at a time; record every read."""
    from sclens.sae import _data

    reads = []
    read_rows = _data.read_rows

    def recording(x, start, stop):
        reads.append((type(x).__name__, stop - start))
        return read_rows(x, start, stop)

    monkeypatch.setattr(_data, "_CHUNK_FLOATS", 100 * 16)
    monkeypatch.setattr(_data, "read_rows", recording)
    return reads


def test_backed_h5py_embedding_streamed(toy_2500, tmp_path, small_chunks):
    import h5py

    class Counting(h5py.Dataset):
        rows = []

        def __getitem__(self, key):
            Counting.rows.append(key.stop - key.start)  # only row slices, never an index array
            return super().__getitem__(key)

        def __array__(self, *args, **kwargs):
            raise AssertionError("the backed embedding was read whole")

    adata = toy_2500.copy()
    with h5py.File(tmp_path / "emb.h5", "w") as f:
        f["emb"] = adata.obsm["X_emb"]
    with h5py.File(tmp_path / "emb.h5", "r") as f:
        adata.obsm["backed"] = Counting(f["emb"].id)
        sl.tl.fit_sae(adata, use_rep="backed", key_added="h5", **FAST)
        del adata.obsm["backed"]
    # training reads batch_size (128) rows, the final encoding 1024, never all 2500
    assert set(Counting.rows) <= {128, 1024, 2500 % 128, 2500 % 1024} and {t for t, _ in small_chunks} == {"Counting"}
    sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)  # in memory with the same chunks: the same model
    assert (adata.obsm["X_h5"] != adata.obsm["X_sae"]).nnz == 0


def test_dask_embedding_streamed(toy_2500, small_chunks):
    da = pytest.importorskip("dask.array")
    adata = toy_2500.copy()
    adata.obsm["lazy"] = da.from_array(adata.obsm["X_emb"], chunks=(50, 16))
    sl.tl.fit_sae(adata, use_rep="lazy", key_added="dask", **FAST)
    assert max(n for _, n in small_chunks) == 1024 and {t for t, _ in small_chunks} == {"Array"}
    sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)
    assert (adata.obsm["X_dask"] != adata.obsm["X_sae"]).nnz == 0


@pytest.mark.filterwarnings("ignore:From 0.4 .update:FutureWarning")  # mudata's own pull_on_update notice
def test_mudata_global_obsm(toy, tmp_path):
    import mudata as md

    mdata = md.MuData({"rna": toy.copy()})
    mdata.obsm["X_joint"] = toy.obsm["X_emb"].copy()
    sl.tl.fit_sae(mdata, use_rep="X_joint", **FAST)
    ref = sl.tl.fit_sae(toy, use_rep="X_emb", copy=True, **FAST)
    assert mdata.uns["sae"]["params"]["use_rep"] == "X_joint" and "sae" not in mdata.mod["rna"].uns
    assert (mdata.obsm["X_sae"] != ref.obsm["X_sae"]).nnz == 0
    mdata.write(tmp_path / "m.h5mu")
    back = md.read_h5mu(tmp_path / "m.h5mu")
    _assert_same(mdata.uns["sae"], back.uns["sae"])
    sl.tl.encode(back)
    assert (back.obsm["X_sae"] != ref.obsm["X_sae"]).nnz == 0


def _replay_stopping(steps, losses, *, min_steps, max_steps, eval_every, patience, rel_tol=1e-3):
    """The stopping rule as `Stopping` documents it, replayed on the recorded held-out losses.

    A miss is a loss not ``rel_tol`` below the best; ``patience`` misses in a row (from ``min_steps`` on)
    decay the learning rate once, the next ``patience`` misses stop; ``max_steps`` always stops.
    """
    best, misses, decayed = np.inf, 0, False
    for step, loss in zip(steps, losses, strict=True):
        assert step % eval_every == 0 or step == max_steps
        if loss < best * (1 - rel_tol):
            best, misses = loss, 0
        else:
            misses += 1
        if step >= max_steps:
            return "max_steps", int(step)
        if misses >= patience and step >= min_steps:
            if decayed:
                return "converged", int(step)
            decayed, misses = True, 0
    return "not stopped", int(steps[-1])


def test_defaults_train_to_convergence_and_record_it(toy, tmp_path):
    from sclens.sae import default_lr

    adata = toy.copy()
    rule = {"min_steps": 30, "max_steps": 400, "eval_every": 10, "patience": 1}
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=64, k=4, trainer_kwargs=rule)
    run = adata.uns["sae"]
    assert run["params"]["n_epochs"] == "auto" and run["params"]["lr"] == pytest.approx(default_lr(64))
    m = run["metrics"]
    assert (m["stop_reason"], m["n_steps"]) == _replay_stopping(m["train_step"], m["val_loss"], **rule)
    assert m["best_val_fvu"] == pytest.approx(min(m["val_fvu"]))
    np.testing.assert_array_equal(m["train_step"], np.arange(10, m["n_steps"] + 1, 10))
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["sae"]["metrics"]
    assert back["stop_reason"] == m["stop_reason"] and back["n_steps"] == m["n_steps"]


def test_default_width_capped_by_cells(toy):
    """A wide default SAE on few cells memorises cells: the width is at most a third of the cells."""
    d = toy.obsm["X_emb"].shape[1]
    assert 16 * d > 400 // 3  # the cap applies to the 400-cell toy
    fit = {k: v for k, v in FAST.items() if k != "n_features"}
    small = sl.tl.fit_sae(toy, use_rep="X_emb", **{**fit, "n_epochs": 1}, copy=True)
    assert small.uns["sae"]["params"]["n_features"] == 400 // 3 == small.obsm["X_sae"].shape[1]
    wide = sl.tl.fit_sae(toy, use_rep="X_emb", expansion_factor=2, **{**fit, "n_epochs": 1}, copy=True)
    assert wide.obsm["X_sae"].shape[1] == 2 * d  # below the cap: expansion_factor * n_dims
    tiny = sl.tl.fit_sae(toy[:30].copy(), use_rep="X_emb", **{**fit, "n_epochs": 1, "k": 8}, copy=True)
    assert tiny.obsm["X_sae"].shape[1] == 16  # never fewer than 2 k


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_any_representable_scale_fits_like_unit_scale(toy, fitted, scale):
    """Training normalises its input: an embedding at 1e-30 or 1e30 gives the unit-scale fit (issue 23)."""
    adata = toy.copy()
    adata.obsm["X_emb"] = (np.asarray(toy.obsm["X_emb"], dtype=np.float64) * scale).astype(np.float32)
    sl.tl.fit_sae(adata, use_rep="X_emb", **FAST)
    assert adata.uns["sae"]["metrics"]["fvu"] == pytest.approx(fitted.uns["sae"]["metrics"]["fvu"], rel=1e-3)
    same = (adata.obsm["X_sae"] > 0) != (fitted.obsm["X_sae"] > 0)
    assert same.nnz <= 0.01 * fitted.obsm["X_sae"].nnz


def test_trainer_kwargs_are_recorded_and_reused_by_refits(toy, tmp_path):
    from sclens.tl._trust._stability import refit_kwargs

    adata = toy.copy()
    given = {"step": "static", "topk_select": "blocked", "min_steps": 20, "max_steps": 40, "eval_every": 10,
             "patience": 1, "show_progress": False, "callback": None}  # fmt: skip
    sl.tl.fit_sae(adata, use_rep="X_emb", n_features=64, k=4, architecture="jumprelu", trainer_kwargs=given,
                  sae_kwargs={"architecture_options": {"bandwidth": 0.3}})  # fmt: skip
    params = adata.uns["sae"]["params"]
    assert params["trainer_kwargs"] == {k: v for k, v in given.items() if v is not None}  # None: the default
    assert adata.uns["sae"]["metrics"]["n_steps"] <= 40  # and they were used
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["sae"]["params"]
    assert dict(back["trainer_kwargs"]) == params["trainer_kwargs"]
    kw = refit_kwargs(back, {"n_epochs": 1})  # seed-stability refits: the same schedule and architecture options
    assert kw["trainer_kwargs"] == {"min_steps": 20, "max_steps": 40, "eval_every": 10, "patience": 1}
    assert kw["sae_kwargs"]["architecture_options"] == {"bandwidth": 0.3, "init_threshold": 0.5}
    assert (kw["architecture"], kw["n_epochs"]) == ("jumprelu", 1)
