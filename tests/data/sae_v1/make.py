"""Write SAE files with the code of main at 8e3f729 (before per-architecture config classes) for tests/data/sae_v1/.

Run: PYTHONPATH=<main>/src python tests/data/sae_v1/make.py tests/data/sae_v1
"""
import sys, warnings; warnings.filterwarnings("ignore")
from pathlib import Path
import numpy as np, torch, anndata as ad
import sclens as sl
from sclens.sae import SAEConfig, SparseAutoencoder, save_sae
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
x = rng.normal(size=(12, 4)).astype(np.float32)
enc = {"x": x}
for name, arch, opts in [("jumprelu", "jumprelu", {"bandwidth": 0.3, "init_threshold": 0.25}),
                         ("matryoshka", "matryoshka_batchtopk", {"n_prefixes": 3, "momentum": 0.9})]:
    torch.manual_seed(0)
    sae = SparseAutoencoder(SAEConfig(input_dim=4, n_features=8, architecture=arch, k=2, architecture_options=opts), seed=0)
    with torch.no_grad():
        for p in sae.parameters():
            p.add_(0.1 * torch.randn_like(p))
        if arch != "jumprelu":
            sae.threshold.fill_(0.05)
    save_sae(sae.eval(), out / name)
    with torch.no_grad():
        enc[name] = sae.eval().encode(torch.as_tensor(x)).numpy()
np.savez(out / "encodings.npz", **enc)
a = ad.AnnData(obs={"i": np.arange(60).astype(str)})
a.obsm["X_emb"] = rng.normal(size=(60, 4)).astype(np.float32)
sl.tl.fit_sae(a, use_rep="X_emb", n_features=8, architecture="jumprelu", n_epochs=2, batch_size=16,
              sae_kwargs={"architecture_options": {"bandwidth": 0.3}}, random_state=0)
del a.obs["i"]
a.write_h5ad(out / "fit_jumprelu.h5ad")
