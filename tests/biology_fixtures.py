"""Builders of test data shared by the test files (imported as ``biology_fixtures``; ``tests/`` is on the path).

They stand in for ``sl.tl.fit_sae`` and ``sl.tl.annotate_features`` by writing the storage contracts
directly: the toy data's true program codes become the SAE activations (feature ``p`` = program ``p``,
decoder rows = the planted atoms), and the planted program gene sets become the GO annotation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import sparse

import sclens as sl


def toy_with_sae(*, n_cells: int = 600, random_state: int = 0, n_dead: int = 2, **kwargs):
    """Toy AnnData with ``obsm['X_sae']`` = true codes (+ ``n_dead`` never-active features)."""
    adata = sl.datasets.toy(n_cells=n_cells, random_state=random_state, **kwargs)
    codes = adata.obsm["X_codes"]
    n_cells_, n_prog = codes.shape
    act = sparse.hstack([sparse.csr_matrix(codes), sparse.csr_matrix((n_cells_, n_dead))]).tocsr()
    act = act.astype(np.float32)
    atoms = adata.uns["toy"]["atoms"]
    d = atoms.shape[1]
    w_dec = np.vstack([atoms, np.zeros((n_dead, d), dtype=np.float32)]).astype(np.float32)
    n_feat = act.shape[1]
    adata.obsm["X_sae"] = act
    dense = act.toarray()
    feats = pd.DataFrame(
        {
            "frequency": (dense > 0).mean(0),
            "mean_activation": dense.mean(0),
            "max_activation": dense.max(0),
            "kind": np.where(dense.max(0) > 0, "live", "dead"),
        },
        index=[str(i) for i in range(n_feat)],
    )
    adata.uns["sae"] = {
        "params": {
            "architecture": "topk",
            "n_features": n_feat,
            "use_rep": "X_emb",
            "input_dim": d,
            "k": 4,
            "random_state": 0,
        },
        "metrics": {"fvu": 0.0},
        "weights": {
            "W_enc": np.ascontiguousarray(w_dec.T),
            "b_enc": np.zeros(n_feat, dtype=np.float32),
            "W_dec": w_dec,
            "b_dec": np.zeros(d, dtype=np.float32),
        },
        "features": feats,
    }
    return adata


def program_membership(adata) -> np.ndarray:
    """Programs x genes 0/1 matrix of the toy's planted program gene sets."""
    gs = adata.uns["toy"]["gene_sets"]
    gs = gs[gs["source"].str.startswith("program_")]
    m = np.zeros((adata.uns["toy"]["atoms"].shape[0], adata.n_vars))
    for src, tgt in zip(gs["source"], gs["target"], strict=True):
        m[int(src.split("_")[1]), adata.var_names.get_loc(tgt)] = 1.0
    return m


def toy_decoder(adata):
    """The toy generator's expression model as a steering ``decode``: codes from the embedding, softmax over genes."""
    atoms = adata.uns["toy"]["atoms"].astype(np.float64)
    m = program_membership(adata)
    counts = adata.layers["counts"].toarray()
    base = np.log(counts.sum(0) / counts.sum() + 1e-9)
    effect = adata.uns["toy"]["params"]["effect"]

    def decode(emb, cells):
        codes = emb @ np.linalg.pinv(atoms)
        logit = base + effect * codes @ m
        p = np.exp(logit - logit.max(1, keepdims=True))
        return 1e4 * p / p.sum(1, keepdims=True)

    return decode


def go_results(adata, *, n_decoy_terms: int = 3, random_state: int = 0) -> pd.DataFrame:
    """Hand-built annotation table: each live program feature gets its program's 'terms'.

    Local programs of cell type ``t`` get terms ``GO:1<t>xx`` with names containing ``type_<t>``;
    global programs share an 'interferon' term and a few random decoy terms.
    """
    rng = np.random.default_rng(random_state)
    kind = adata.uns["toy"]["program_kind"]
    group = adata.uns["toy"]["program_group"]
    rows = []
    for p, (k, g) in enumerate(zip(kind, group, strict=True)):
        if k == "local":
            t = int(g.split("_")[1])
            terms = [(f"GO:{1000 + 10 * t + j:07d}", f"{g} specific process {j}", "BP") for j in range(3)]
            terms.append((f"GO:{2000 + t:07d}", f"{g} binding", "MF"))
        else:
            terms = [("GO:0009000", "response to interferon", "BP"), ("GO:0009001", "signaling", "BP")]
            for j in rng.choice(40, size=n_decoy_terms, replace=False):
                terms.append((f"GO:{3000 + j:07d}", f"decoy process {j}", "BP" if j % 2 else "MF"))
        for term, name, ns in terms:
            rows.append((p, term, name, ns, 5, 10, 20, 3.0, 1e-4, 1e-3))
    cols = ["feature", "term", "name", "namespace", "n_overlap", "set_size", "n_de", "odds_ratio", "pvalue", "padj"]
    res = pd.DataFrame(rows, columns=cols)
    res["feature"] = res["feature"].astype(int)
    res.index = res.index.astype(str)
    return res


def add_go(adata, *, key: str = "sae_go", **kwargs):
    """Write ``uns[key]`` per the annotation contract."""
    adata.uns[key] = {
        "results": go_results(adata, **kwargs),
        "params": {"key": "sae", "source": "toy", "alpha": 0.01, "enrichment": "ora"},
    }
    return adata


def categories_for(results: pd.DataFrame) -> dict[str, str]:
    """A term -> first-level category mapping for the hand-built terms."""
    out = {}
    for term, name in zip(results["term"], results["name"], strict=True):
        if "type_" in name:
            out[term] = "cellular process"
        elif "decoy" in name:
            out[term] = "metabolic process"
        else:
            out[term] = "response to stimulus"
    return out


def sae_from_codes(adata, *, key: str = "sae", extra: bool = False):
    """Store ``obsm['X_codes']`` as the SAE run ``key`` per the storage contract (no SAE needed).

    With ``extra``, three features are appended: a control active on a random 30% of cells
    with a flat activation (its high set is a random 30% of cells, no planted program), a feature
    active in only 4 cells, and a dead feature.
    """
    codes = np.asarray(adata.obsm["X_codes"], dtype=np.float32)
    if extra:
        rng = np.random.default_rng(1)
        n = adata.n_obs
        control = np.where(rng.random(n) < 0.3, 1.0, 0.0)  # flat: high = a random 30% of cells
        tiny = np.zeros(n)
        tiny[rng.choice(n, 4, replace=False)] = 1.0
        codes = np.column_stack([codes, control, tiny, np.zeros(n)]).astype(np.float32)
    acts = sparse.csr_matrix(codes)
    freq = (codes > 0).mean(axis=0)
    adata.obsm[f"X_{key}"] = acts
    adata.uns[key] = {
        "params": {"architecture": "planted", "n_features": codes.shape[1], "use_rep": "X_emb"},
        "features": pd.DataFrame(
            {
                "frequency": freq,
                "mean_activation": codes.mean(axis=0),
                "max_activation": codes.max(axis=0),
                "kind": np.where(freq > 0, "live", "dead"),
            },
            index=[str(i) for i in range(codes.shape[1])],
        ),
    }
    return adata


def toy_sae(*, extra: bool = False, **kwargs):
    """Toy AnnData with an SAE run under ``"sae"`` whose feature XX is planted program_XX."""
    return sae_from_codes(sl.datasets.toy(**kwargs), extra=extra)
