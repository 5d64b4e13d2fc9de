import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sclens.sae import SAEConfig, SparseAutoencoder, available_architectures, get_architecture


def test_registry_has_all_architectures():
    assert {"vanilla", "relu", "topk", "batchtopk"} <= set(available_architectures())
    assert get_architecture("relu").pre_bias and not get_architecture("vanilla").pre_bias
    assert SAEConfig(input_dim=4, n_features=8, architecture="relu").to_dict()["architecture"] == "relu"


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"n_features": 8, "k": 8}, ValueError, r"k must satisfy 1 <= k < n_features .* k=8, n_features=8"),
        ({"n_features": 8, "k": 20}, ValueError, r"lower k or raise n_features"),
        ({"n_features": 0}, ValueError, r"n_features must be >= 1, got 0"),
        ({"n_features": 8, "architecture": "gated"}, ValueError, r"Unknown SAE architecture 'gated'; choose one of"),
        ({"n_features": 8, "k": 2, "scale": "minmax"}, ValueError, r"scale must be one of"),
        ({"n_features": 8.5}, TypeError, r"n_features must be an integer"),
        ({"n_features": 8, "k": 2, "l1_weight": -1.0}, ValueError, r"l1_weight must be >= 0"),
    ],
)
def test_config_errors(kw, err, match):
    with pytest.raises(err, match=match):
        SAEConfig(input_dim=4, **kw)


def test_k_not_checked_for_l1_architectures():
    cfg = SAEConfig(input_dim=4, n_features=8, architecture="vanilla", k=32)
    assert cfg.aux_k == 0


def test_tied_init_unit_norm_and_seed():
    cfg = SAEConfig(input_dim=6, n_features=20, k=3)
    a, b = SparseAutoencoder(cfg, seed=3), SparseAutoencoder(cfg, seed=3)
    assert torch.equal(a.W_dec, b.W_dec)
    assert not torch.equal(a.W_dec, SparseAutoencoder(cfg, seed=4).W_dec)
    assert torch.equal(a.W_enc, a.W_dec.T)
    torch.testing.assert_close(a.W_dec.norm(dim=1), torch.ones(20))


def test_parallel_gradient_removed():
    sae = SparseAutoencoder(SAEConfig(input_dim=6, n_features=20, k=3), seed=0)
    out = sae(torch.randn(32, 6))
    out.loss.backward()
    sae.remove_parallel_grads_()
    dots = (sae.W_dec.grad * sae.W_dec).sum(1)
    torch.testing.assert_close(dots, torch.zeros(20), atol=1e-6, rtol=0)


def test_forward_output_consistent():
    sae = SparseAutoencoder(SAEConfig(input_dim=6, n_features=20, k=3), seed=0).eval()
    x = torch.randn(10, 6)
    out = sae(x)
    assert out.activations.shape == (10, 20)
    assert float(out.l0) == 3.0
    torch.testing.assert_close(out.activations, sae.encode(x))
    torch.testing.assert_close(out.reconstruction, sae.decode(sae.encode(x)))
    with pytest.raises(ValueError, match=r"expects inputs of width 6, got shape \(10, 5\)"):
        sae.encode(torch.randn(10, 5))


def test_core_does_not_import_anndata():
    src = Path(__file__).parents[2] / "src" / "sclens"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('sclens'); pkg.__path__ = [{str(src)!r}]; sys.modules['sclens'] = pkg\n"
        "import sclens.sae\n"
        "bad = [m for m in ('anndata', 'scanpy', 'mudata') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_integers_accepted():
    # sizes often come from numpy (a grid, `adata.obsm[...].shape`); they become plain ints (JSON friendly)
    cfg = SAEConfig(input_dim=np.int64(4), n_features=np.int32(8), k=np.int64(2), aux_k=np.int64(3))
    assert (cfg.input_dim, cfg.n_features, cfg.k, cfg.aux_k) == (4, 8, 2, 3)
    assert all(type(v) is int for v in (cfg.input_dim, cfg.n_features, cfg.k, cfg.aux_k))
    json.loads(cfg.to_json())
    with pytest.raises(TypeError, match=r"n_features must be an integer, got np.True_"):
        SAEConfig(input_dim=4, n_features=np.bool_(True))


def test_topk_sparse_backward_matches_autograd():
    from sclens.sae._registry import topk_encode

    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in ((7, 5), (5, 12), (12,))]
    assert torch.autograd.gradcheck(lambda x, w, b: topk_encode(x, w, b, 4)[0], args)


def test_architecture_options_are_validated_saved_and_reloaded(tmp_path):
    """Per-architecture hyperparameters live in the config: defaults filled in, unknown ones refused, saved."""
    from sclens.sae import BatchTopKConfig, JumpReLUConfig, TopKConfig, load_sae, save_sae

    cfg = SAEConfig(input_dim=4, n_features=8, architecture="jumprelu", architecture_options={"bandwidth": 0.05})
    assert cfg.architecture_options == JumpReLUConfig(bandwidth=0.05, init_threshold=0.5)
    assert cfg.to_dict()["architecture_options"] == {"bandwidth": 0.05, "init_threshold": 0.5}
    batch = SAEConfig(input_dim=4, n_features=8, k=2, architecture="batchtopk")
    assert batch.architecture_options == BatchTopKConfig(momentum=0.99)
    assert SAEConfig(input_dim=4, n_features=8, k=2).architecture_options == TopKConfig()
    assert SAEConfig(input_dim=4, n_features=8, k=2).to_dict()["architecture_options"] == {}
    with pytest.raises(ValueError, match=r"options \['bandwidth'\] are not options of architecture 'topk'"):
        SAEConfig(input_dim=4, n_features=8, k=2, architecture_options={"bandwidth": 0.1})
    model = SparseAutoencoder(cfg, seed=0)
    assert model.arch.config.bandwidth == 0.05
    save_sae(model, tmp_path / "m")
    back = load_sae(tmp_path / "m")
    assert back.arch.config.bandwidth == 0.05
    assert back.cfg.architecture_options == cfg.architecture_options
    old = {k: v for k, v in cfg.to_dict().items() if k != "architecture_options"}  # saved before the field existed
    assert SAEConfig.from_dict(old).architecture_options == JumpReLUConfig()


@pytest.mark.parametrize(
    ("architecture", "options", "error", "message"),
    [
        ("jumprelu", {"bandwidth": -0.1}, ValueError,
         r"architecture_options\['bandwidth'\] \(JumpReLUConfig\) must be a finite number > 0, got -0.1"),
        ("jumprelu", {"init_threshold": float("nan")}, ValueError, r"\['init_threshold'\] \(JumpReLUConfig\) must be"),
        ("jumprelu", {"bandwidth": "wide"}, TypeError, r"\['bandwidth'\] \(JumpReLUConfig\) must be float, got 'wide'"),
        ("batchtopk", {"momentum": 1.0}, ValueError, r"\['momentum'\] \(BatchTopKConfig\) must be in \[0, 1\), got 1"),
        ("matryoshka_batchtopk", {"n_prefixes": 0}, ValueError, r"\['n_prefixes'\] \(Matryoshka\w+\) must be >= 1"),
        ("matryoshka_batchtopk", {"n_prefixes": 2.5}, TypeError, r"\['n_prefixes'\] \(Matryoshka\w+\) must be int"),
        ("matryoshka_batchtopk", {"bandwidth": 0.1}, ValueError,
         r"its options \(MatryoshkaBatchTopKConfig\): \['momentum', 'n_prefixes'\]"),
        ("relu", {"momentum": 0.5}, ValueError, r"its options \(ReLUConfig\): none"),
        ("topk", "momentum=0.5", TypeError, "architecture_options must be a TopKConfig or a dict, got str"),
    ],
)  # fmt: skip
def test_architecture_options_refused_with_the_setting_named(architecture, options, error, message):
    from sclens.sae import SAEConfig

    with pytest.raises(error, match=message):
        SAEConfig(input_dim=4, n_features=8, k=2, architecture=architecture, architecture_options=options)


def test_each_architecture_has_its_own_config_class():
    from dataclasses import fields

    from sclens.sae import (
        JumpReLUConfig,
        MatryoshkaBatchTopKConfig,
        SAEConfig,
        SparseAutoencoder,
        available_architectures,
        get_architecture,
    )
    from sclens.sae._registry import _REGISTRY

    builtin = [n for n in available_architectures() if _REGISTRY[n].__module__.startswith("sclens.")]
    classes = {n: _REGISTRY[n].config_class for n in builtin}
    assert len(set(classes.values())) == len(builtin) == 6  # one class each, none shared
    own = {n: sorted(f.name for f in fields(c)) for n, c in classes.items()}
    assert own == {"batchtopk": ["momentum"], "jumprelu": ["bandwidth", "init_threshold"], "relu": [], "topk": [],
                   "matryoshka_batchtopk": ["momentum", "n_prefixes"], "vanilla": []}  # fmt: skip
    with pytest.raises(ValueError, match=r"options is a JumpReLUConfig; architecture 'topk' takes a TopKConfig"):
        SAEConfig(input_dim=4, n_features=8, k=2, architecture_options=JumpReLUConfig())
    # the settings reach the model: 3 prefixes of 8 features are 2, 4, 8
    cfg = SAEConfig(input_dim=4, n_features=8, k=2, architecture="matryoshka_batchtopk",
                    architecture_options=MatryoshkaBatchTopKConfig(n_prefixes=3))  # fmt: skip
    assert SparseAutoencoder(cfg, seed=0).arch.prefixes(8) == [2, 4, 8]
    assert get_architecture("matryoshka_batchtopk").prefixes(8) == [1, 2, 4, 8]


V1 = Path(__file__).parents[1] / "data" / "sae_v1"  # written by main before the config classes (make.py)


@pytest.mark.parametrize(("name", "config"), [("jumprelu", {"bandwidth": 0.3, "init_threshold": 0.25}),
                                              ("matryoshka", {"momentum": 0.9, "n_prefixes": 3})])  # fmt: skip
def test_sae_files_written_before_the_config_classes_still_load(name, config, tmp_path):
    import shutil

    from sclens.sae import load_sae, save_sae

    x = np.load(V1 / "encodings.npz")
    model = load_sae(V1 / name)
    assert model.arch.config.to_dict() == config
    with torch.no_grad():
        np.testing.assert_array_equal(model.encode(torch.as_tensor(x["x"])).numpy(), x[name])
    resaved = json.loads((save_sae(model, tmp_path / "again") / "cfg.json").read_text())
    assert resaved == json.loads((V1 / name / "cfg.json").read_text())  # the file format did not change
    older = tmp_path / "older"  # a cfg.json from before `architecture_options` existed: the defaults
    shutil.copytree(V1 / name, older)
    meta = json.loads((older / "cfg.json").read_text())
    del meta["architecture_options"]
    (older / "cfg.json").write_text(json.dumps(meta))
    assert load_sae(older).arch.config == type(model.arch.config)()


def test_h5ad_written_before_the_config_classes_still_loads():
    import anndata as ad

    import sclens as sl
    from sclens.sae import JumpReLUConfig

    adata = ad.read_h5ad(V1 / "fit_jumprelu.h5ad")
    model = sl.get.sae(adata)
    assert model.arch.config == JumpReLUConfig(bandwidth=0.3)
    with torch.no_grad():
        z = model.encode(torch.as_tensor(np.asarray(adata.obsm["X_emb"]))).numpy()
    np.testing.assert_allclose(z, adata.obsm["X_sae"].toarray(), rtol=1e-6, atol=1e-7)
    sl.tl.encode(adata)  # re-encoding the stored run gives the same activations: the same run
    assert adata.uns["sae"]["params"]["architecture_options"] == {"bandwidth": 0.3, "init_threshold": 0.5}
