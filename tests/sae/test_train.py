import numpy as np
import pytest
import torch
from scipy import sparse

from sclens.sae import (
    ArrayBatches,
    SAEConfig,
    SparseAutoencoder,
    evaluate,
    geometric_median,
    load_sae,
    save_sae,
    train_sae,
)


@pytest.fixture(scope="module")
def planted(make_planted):
    return make_planted()


def _fit(x, *, n_epochs, lr, seed=0, batch_size=128, **cfg):
    sae = SparseAutoencoder(SAEConfig(input_dim=x.shape[1], **cfg), seed=seed)
    history = train_sae(sae, x, n_epochs=n_epochs, batch_size=batch_size, lr=lr, seed=seed, show_progress=False)
    return sae, history


@pytest.fixture(scope="module")
def planted32(make_planted):
    return make_planted(n=3000, d=32)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [("topk", {"k": 4, "n_features": 128}), ("relu", {"l1_weight": 1.0, "n_features": 128})],
)
def test_planted_dictionary_recovered(planted32, best_cosine, arch, kw):
    x, atoms = planted32
    sae, history = _fit(x, architecture=arch, n_epochs=20, lr=PLANTED_LR[arch], **kw)
    ev = evaluate(sae, x)
    assert best_cosine(sae, atoms) >= 0.9
    assert ev.fvu < 0.1
    assert history["fvu"][-1] < history["fvu"][0]


PLANTED_LR = {"topk": 5e-3, "relu": 1e-2}


def test_vanilla_l1_controls_sparsity(planted):
    x = planted[0][:1500]
    l0 = {}
    for w in (0.01, 5.0):
        sae, _ = _fit(x, architecture="vanilla", n_features=64, l1_weight=w, n_epochs=5, lr=1e-2)
        l0[w] = evaluate(sae, x).l0
    assert l0[5.0] < 0.5 * l0[0.01]


def test_auxk_reduces_dead_features(planted):
    # a too-high learning rate kills a fifth of the features; AuxK revives most of them
    x = planted[0][:2000]
    dead = {}
    for aux_weight in (0.0, 1.0):
        sae, _ = _fit(
            x, architecture="topk", n_features=64, k=3, aux_weight=aux_weight, dead_steps=10, n_epochs=15, lr=0.05
        )
        dead[aux_weight] = evaluate(sae, x).dead_fraction
    assert dead[0.0] > 0.15
    assert dead[1.0] < dead[0.0] - 0.08


def test_batchtopk_inference_independent_of_batch(planted):
    x = planted[0][:1000]
    sae, _ = _fit(x, architecture="batchtopk", n_features=64, k=3, n_epochs=3, lr=1e-2)
    assert float(sae.threshold) > 0
    xt = torch.from_numpy(x[:50])
    with torch.no_grad():
        full = sae.encode(xt)
        single = torch.cat([sae.encode(xt[i : i + 1]) for i in range(50)])
        mixed = sae.encode(torch.cat([xt[25:], torch.from_numpy(x[500:900])]))[:25]
    # same active features and values up to float round-off of different matmul shapes
    assert torch.equal(full > 0, single > 0) and torch.equal(full[25:] > 0, mixed > 0)
    torch.testing.assert_close(single, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed, full[25:], atol=1e-5, rtol=1e-5)
    assert 1 < float((full > 0).sum(1).float().mean()) < 10


def test_same_seed_identical(planted):
    x = planted[0][:600]
    a, ha = _fit(x, architecture="topk", n_features=64, k=3, n_epochs=2, lr=1e-2, seed=5)
    b, hb = _fit(x, architecture="topk", n_features=64, k=3, n_epochs=2, lr=1e-2, seed=5)
    c, _ = _fit(x, architecture="topk", n_features=64, k=3, n_epochs=2, lr=1e-2, seed=6)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        assert torch.equal(a.encode(xt), b.encode(xt))
        assert not torch.equal(a.encode(xt), c.encode(xt))
    np.testing.assert_array_equal(ha["loss_step"], hb["loss_step"])


@pytest.mark.parametrize("arch", ["vanilla", "relu", "topk", "batchtopk"])
def test_normalization_folded_and_save_load(planted, tmp_path, arch):
    x = planted[0][:400] * 7.0 + 3.0
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=48, architecture=arch, k=3, scale="std"), seed=0)
    train_sae(sae, x, n_epochs=1, batch_size=100, lr=1e-2, fold=False, show_progress=False)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        before, recon = sae.encode(xt), sae.decode(sae.encode(xt))
        torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(48))  # unit norm while training
        sae.fold_normalization_()
        torch.testing.assert_close(sae.encode(xt), before, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sae.decode(sae.encode(xt)), recon, atol=1e-3, rtol=1e-4)
        save_sae(sae, tmp_path / "m")
        assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["cfg.json", "sae.safetensors"]
        loaded = load_sae(tmp_path / "m", input_dim=16)
        assert loaded.cfg == sae.cfg
        assert torch.equal(loaded.encode(xt), sae.encode(xt))
    with pytest.raises(ValueError, match=r"trained on 16-dimensional inputs but the data has 20 columns"):
        load_sae(tmp_path / "m", input_dim=20)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_sae(sae, tmp_path / "m")


def test_streaming_reads_chunks_only(planted):
    x = planted[0][:1000]

    class Guarded:
        """Array that refuses reads larger than one chunk."""

        shape, dtype = x.shape, x.dtype
        max_read = 0

        def __getitem__(self, key):
            assert isinstance(key, slice)
            Guarded.max_read = max(Guarded.max_read, key.stop - key.start)
            return sparse.csr_matrix(x[key])

    batches = ArrayBatches(Guarded(), batch_size=64, chunk_size=200, seed=1)
    seen = np.concatenate([b.numpy() for b in batches])
    assert Guarded.max_read == 200
    assert len(seen) == 1000 and len(list(batches)) == len(batches) == 16
    np.testing.assert_allclose(np.sort(seen[:, 0]), np.sort(x[:, 0]))
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=32, k=3), seed=0)
    train_sae(sae, batches, n_epochs=1, lr=1e-2, show_progress=False)
    # a plain iterable of tensors also works (statistics from its first rows)
    tensors = [torch.from_numpy(x[i : i + 100]) for i in range(0, 1000, 100)]
    sae2 = SparseAutoencoder(SAEConfig(input_dim=16, n_features=32, k=3), seed=0)
    hist = train_sae(sae2, tensors, n_epochs=2, lr=1e-2, show_progress=False)
    assert len(hist["loss"]) == 2 and len(hist["loss_step"]) == 20


def test_nonfinite_input_raises(planted):
    x = planted[0][:100].copy()
    x[3, 2] = np.nan
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=32, k=3), seed=0)
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 cell"):
        train_sae(sae, x, n_epochs=1, show_progress=False)


def test_geometric_median_robust_to_outliers():
    rng = np.random.default_rng(0)
    pts = np.vstack([rng.normal(size=(99, 3)), [[1000.0, 1000.0, 1000.0]]])
    assert np.linalg.norm(geometric_median(pts)) < 0.5
    assert np.linalg.norm(pts.mean(0)) > 10


def test_epoch_fvu_survives_a_one_cell_last_batch(planted):
    # 129 cells in batches of 128: the last batch has one cell and no variance of its own
    x = planted[0][:129]
    sae, history = _fit(x, architecture="topk", n_features=32, k=3, n_epochs=2, lr=1e-2, batch_size=128)
    assert np.all(history["fvu"] < 1.0)
    assert history["fvu"][-1] == pytest.approx(evaluate(sae, x).fvu, rel=0.3)


def test_batchtopk_threshold_is_smallest_positive_kept():
    # two features can be positive, so a batch has fewer than k * n positive candidates
    sae = SparseAutoencoder(SAEConfig(input_dim=8, n_features=32, architecture="batchtopk", k=3), seed=0).train()
    with torch.no_grad():
        sae.b_enc.fill_(-100.0)
        sae.b_enc[:2] = 100.0
        out = sae(torch.randn(64, 8, generator=torch.Generator().manual_seed(0)))
    kept = out.acts[out.acts > 0]
    assert len(kept) == 128 and float(sae.threshold) == pytest.approx(float(kept.min()))


def test_given_array_batches_are_sharded_across_ranks(planted):
    from sclens.sae._train import as_batches

    x = planted[0][:1000]
    whole = ArrayBatches(x, batch_size=100, seed=1)
    shards = [list(as_batches(whole, batch_size=100, shuffle=True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert [len(s) for s in shards] == [5, 5] and whole.world_size == 1
    seen = np.concatenate([b.numpy() for s in shards for b in s])
    np.testing.assert_array_equal(np.sort(seen[:, 0]), np.sort(x[:, 0]))


def test_one_shot_iterator_rejected(planted):
    x = planted[0][:300]
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=32, k=3), seed=0)
    batches = (torch.from_numpy(x[i : i + 100]) for i in range(0, 300, 100))
    with pytest.raises(TypeError, match=r"one-shot iterator \(generator\).*pass a list of tensors or an array"):
        train_sae(sae, batches, n_epochs=2, show_progress=False)


def test_lazy_array_computed_chunk_by_chunk(planted):
    x = planted[0][:1000]
    computed = []

    class Lazy:
        """Dask-like: slicing is free, `compute()` materialises (and is counted)."""

        def __init__(self, start=0, stop=len(x)):
            self.start, self.stop = start, stop
            self.shape, self.dtype = (stop - start, x.shape[1]), x.dtype

        def __getitem__(self, key):
            return Lazy(self.start + key.start, self.start + min(key.stop, self.shape[0]))

        def compute(self):
            computed.append(self.stop - self.start)
            return x[self.start : self.stop]

    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=32, k=3), seed=0)
    train_sae(sae, ArrayBatches(Lazy(), batch_size=64, chunk_size=250), n_epochs=2, lr=1e-2, show_progress=False)
    assert max(computed) == 250 and sum(computed) == 3 * 1000  # statistics + 2 epochs


def test_geometric_median_minimises_summed_distance():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    pts = rng.gamma(1.0, size=(300, 5)) * [1, 3, 10, 0.5, 2]

    def cost(y):
        return np.linalg.norm(pts - y, axis=1).sum()

    ref = minimize(cost, pts.mean(0), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    gm = geometric_median(pts)
    assert cost(gm) <= ref.fun + 1e-6
    np.testing.assert_allclose(gm, ref.x, atol=1e-4)


def test_tensor_input_batched_by_index_on_its_device(planted):
    from sclens.sae import TensorBatches
    from sclens.sae._data import as_batches

    xt = torch.from_numpy(planted[0][:1000])
    batches = as_batches(xt, batch_size=300, shuffle=True, seed=0)
    assert isinstance(batches, TensorBatches)
    epoch = torch.cat(list(batches))  # every row once per pass, in a new order each pass
    assert epoch.shape == xt.shape and not torch.equal(epoch, xt)
    torch.testing.assert_close(epoch.sum(0), xt.sum(0))
    assert not torch.equal(torch.cat(list(batches)), epoch)
    shards = [list(as_batches(batches, batch_size=300, shuffle=True, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert [len(s) for s in shards] == [2, 2]
    sae = SparseAutoencoder(SAEConfig(input_dim=16, n_features=64, k=3), seed=0)
    h = train_sae(sae, xt, n_epochs=3, batch_size=128, lr=1e-2, show_progress=False)
    assert h["fvu"][-1] < h["fvu"][0] and int(h["n_steps"]) == 24
    with pytest.raises(ValueError, match="NaN or infinite"):
        TensorBatches(torch.tensor([[float("nan")]]))
