"""A seeded toy dataset with a planted sparse dictionary, used as test fixture and in examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._docs import doc_params
from .._utils import resolve_seed


@doc_params()
def toy(
    *,
    n_cells: int = 1000,
    n_genes: int = 300,
    n_cell_types: int = 4,
    n_dims: int = 16,
    n_local: int = 2,
    n_global: int = 8,
    n_active_global: int = 3,
    genes_per_program: int = 10,
    n_decoy_sets: int = 20,
    effect: float = 1.0,
    noise: float = 0.05,
    dispersion: float = 10.0,
    random_state: int | None = 0,
) -> AnnData:
    r"""Toy single-cell data whose embedding is a planted sparse dictionary.

    The generative process, with :math:`P` programs ("atoms"):

    * every program :math:`p` has a unit direction :math:`d_p \in \mathbb{{R}}^{{n\_dims}}` and owns
      ``genes_per_program`` genes (disjoint sets);
    * each cell type has ``n_local`` *local* programs that only it uses (each on with probability
      0.6 in its cells); ``n_global`` *global* programs are shared by all cells, of which
      ``n_active_global`` are on in each cell;
    * codes :math:`c_{{cp}} \sim 0.5 + \mathrm{{Gamma}}(2, 0.5)` for active programs, 0 otherwise;
    * embedding :math:`e_c = \sum_p c_{{cp}} d_p + \varepsilon`, :math:`\varepsilon \sim N(0, \text{{noise}}^2)`;
    * expression rate :math:`\mu_{{cg}} = \ell_c \, \mathrm{{softmax}}_g(\log b_g + \text{{effect}}
      \sum_p c_{{cp}} G_{{pg}})` with library size :math:`\ell_c` and program-gene membership
      :math:`G`, counts :math:`y_{{cg}} \sim \mathrm{{NB}}(\mu_{{cg}}, \text{{dispersion}})`.

    Parameters
    ----------
    n_cells, n_genes, n_cell_types, n_dims
        Sizes of the data.
    n_local
        Local programs per cell type.
    n_global
        Programs shared by all cell types.
    n_active_global
        Global programs active in each cell.
    genes_per_program
        Genes up-regulated by each program (``n_programs * genes_per_program <= n_genes``).
    n_decoy_sets
        Random gene sets of the same size added to the gene-set table as negative controls.
    effect
        Log-fold change per unit of program code.
    noise
        Standard deviation of Gaussian noise added to the embedding.
    dispersion
        Negative-binomial inverse dispersion (larger is closer to Poisson).
    {random_state}

    Returns
    -------
    AnnData with

    * ``X``: log1p of counts normalised to 10,000 per cell; ``layers['counts']``: integer counts (CSR);
    * ``obs['cell_type']``; ``obs['n_counts']``;
    * ``obsm['X_emb']``: the embedding; ``obsm['X_codes']``: the true program codes;
    * ``uns['toy']``: ``atoms`` (programs x dims), ``program_kind`` (``local``/``global``),
      ``program_group`` (cell type of local programs), ``gene_sets`` (decoupler-style DataFrame with
      ``source``/``target``, programs and decoys) and ``params``.
    """
    seed = resolve_seed(random_state)
    n_programs = n_cell_types * n_local + n_global
    sizes = {"n_cells": n_cells, "n_genes": n_genes, "n_cell_types": n_cell_types, "n_dims": n_dims}
    _check_sizes(
        sizes, n_programs, n_global=n_global, n_active_global=n_active_global, genes_per_program=genes_per_program
    )
    rng = np.random.default_rng(seed)

    atoms = rng.normal(size=(n_programs, n_dims))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    kind = np.array(["local"] * (n_cell_types * n_local) + ["global"] * n_global)
    types = [f"type_{i}" for i in range(n_cell_types)]
    group = np.array([types[i // n_local] for i in range(n_cell_types * n_local)] + [""] * n_global)
    cell_type, codes = _draw_codes(
        rng, n_cells, n_cell_types, n_local=n_local, n_active_global=n_active_global, n_programs=n_programs
    )
    emb = codes @ atoms + rng.normal(scale=noise, size=(n_cells, n_dims))
    membership, counts = _draw_counts(
        rng, codes, n_genes, genes_per_program=genes_per_program, effect=effect, dispersion=dispersion
    )
    var_names = [f"gene_{g:04d}" for g in range(n_genes)]
    sets = [(f"program_{p:02d}", var_names[g]) for p in range(n_programs) for g in np.flatnonzero(membership[p])]
    for j in range(n_decoy_sets):
        sets += [(f"decoy_{j:02d}", var_names[g]) for g in rng.choice(n_genes, genes_per_program, replace=False)]
    gene_sets = pd.DataFrame(sets, columns=["source", "target"])

    n_counts = counts.sum(axis=1)
    norm = np.log1p(counts / np.maximum(n_counts[:, None], 1) * 1e4)
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical([types[t] for t in cell_type], categories=types), "n_counts": n_counts},
        index=[f"cell_{c:05d}" for c in range(n_cells)],
    )
    adata = AnnData(
        X=sparse.csr_matrix(norm.astype(np.float32)),
        obs=obs,
        var=pd.DataFrame(index=var_names),
        layers={"counts": sparse.csr_matrix(counts)},
        obsm={"X_emb": emb.astype(np.float32), "X_codes": codes.astype(np.float32)},
    )
    adata.uns["toy"] = {
        "atoms": atoms.astype(np.float32),
        "program_kind": kind,
        "program_group": group,
        "gene_sets": gene_sets,
        "params": {
            **sizes,
            "n_local": n_local,
            "n_global": n_global,
            "n_active_global": n_active_global,
            "genes_per_program": genes_per_program,
            "effect": effect,
            "noise": noise,
            "dispersion": dispersion,
            "random_state": seed,
        },
    }
    return adata


def _check_sizes(
    sizes: dict[str, int], n_programs: int, *, n_global: int, n_active_global: int, genes_per_program: int
) -> None:
    for name, val in sizes.items():
        if int(val) < 1:
            msg = f"{name} must be >= 1, got {val}."
            raise ValueError(msg)
    if n_active_global > n_global:
        msg = f"n_active_global ({n_active_global}) cannot exceed n_global ({n_global})."
        raise ValueError(msg)
    if n_programs * genes_per_program > sizes["n_genes"]:
        msg = (
            f"{n_programs} programs x {genes_per_program} genes need at least "
            f"{n_programs * genes_per_program} genes; increase n_genes or lower genes_per_program."
        )
        raise ValueError(msg)


def _draw_codes(
    rng: np.random.Generator, n_cells: int, n_cell_types: int, *, n_local: int, n_active_global: int, n_programs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each cell's type and its program codes (local programs of its type, some global ones)."""
    cell_type = rng.integers(n_cell_types, size=n_cells)
    active = np.zeros((n_cells, n_programs), dtype=bool)
    for t in range(n_cell_types):
        cells = np.flatnonzero(cell_type == t)
        local_idx = np.arange(t * n_local, (t + 1) * n_local)
        active[np.ix_(cells, local_idx)] = rng.random((cells.size, n_local)) < 0.6
    glob = np.arange(n_cell_types * n_local, n_programs)
    for c in range(n_cells):
        active[c, rng.choice(glob, size=n_active_global, replace=False)] = True
    return cell_type, np.where(active, 0.5 + rng.gamma(2.0, 0.5, size=active.shape), 0.0)


def _draw_counts(
    rng: np.random.Generator,
    codes: np.ndarray,
    n_genes: int,
    *,
    genes_per_program: int,
    effect: float,
    dispersion: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the program x gene membership and negative-binomial counts driven by the codes."""
    n_cells, n_programs = codes.shape
    membership = np.zeros((n_programs, n_genes))
    genes = rng.permutation(n_genes)
    for p in range(n_programs):
        membership[p, genes[p * genes_per_program : (p + 1) * genes_per_program]] = 1.0
    log_base = rng.normal(size=n_genes)
    logits = log_base + effect * codes @ membership
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob /= prob.sum(axis=1, keepdims=True)
    library = rng.lognormal(mean=np.log(2000), sigma=0.3, size=(n_cells, 1))
    mu = library * prob
    return membership, rng.poisson(rng.gamma(dispersion, mu / dispersion)).astype(np.float32)
