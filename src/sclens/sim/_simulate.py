"""The paper's hierarchical simulation: programs X, batch effects B, cell-type factors A, counts Y."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._docs import doc_params
from .._utils import resolve_seed

X_DISTRIBUTIONS = ("poisson", "gamma", "lognormal", "normal", "exponential")
LIKELIHOODS = ("deterministic", "poisson", "nb")

# The paper's "small" data: 3 regulators drive 5 genes through a fixed regulation matrix.
# The paper does not print its matrix; this one lets every regulator share a gene with a
# neighbour so that the 5 observables hold the 3 regulators in superposition.
SMALL_CONNECTIVITY = np.array(
    [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]],
    dtype=np.float32,
)

PRESETS: dict[str, dict[str, Any]] = {
    "large": {
        "n_cells": 100_000,
        "n_genes": 20_000,
        "n_programs": 100,
        "n_cell_types": 40,
        "n_batches": 3,
        "x_rate": "linear",
        "mask_density": 0.3,
        "connectivity_density": 0.1,
        "batch_sd": 0.1,
    },
    "small": {
        "n_cells": 12_000,
        "n_genes": 5,
        "n_programs": 3,
        "n_cell_types": 0,
        "n_batches": 1,
        "x_rate": 2.0,
        "mask_density": (0.5, 0.1, 0.9),
        "connectivity_density": 0.0,
        "batch_sd": 0.0,
    },
}


def _program_rates(x_rate: Any, n_programs: int) -> np.ndarray:
    if isinstance(x_rate, str):
        if x_rate != "linear":
            msg = f"x_rate must be 'linear', a number or an array of {n_programs} means, got {x_rate!r}."
            raise ValueError(msg)
        return 1.0 + 0.1 * np.arange(n_programs)
    rate = np.broadcast_to(np.asarray(x_rate, dtype=float), (n_programs,)).copy()
    if (rate <= 0).any():
        msg = f"x_rate must be positive, got {rate}."
        raise ValueError(msg)
    return rate


def _draw_programs(rng: np.random.Generator, dist: str, rate: np.ndarray, n_cells: int) -> np.ndarray:
    """Draw X (cells x programs) with column means ``rate`` from the chosen family."""
    size = (n_cells, rate.size)
    if dist == "poisson":
        return rng.poisson(rate, size=size).astype(float)
    if dist == "gamma":  # shape 2, mean rate
        return rng.gamma(2.0, rate / 2.0, size=size)
    if dist == "exponential":
        return rng.exponential(rate, size=size)
    if dist == "lognormal":  # sigma 0.5, mean rate
        return rng.lognormal(np.log(rate) - 0.125, 0.5, size=size)
    return rng.normal(rate, np.sqrt(rate), size=size)  # normal, Poisson-like variance


def _cell_blocks(n_cells: int, n_genes: int, max_entries: int = 1 << 20) -> list[slice]:
    """Consecutive blocks of cells holding at most about ``max_entries`` cells x genes values."""
    step = max(1, max_entries // max(n_genes, 1))
    return [slice(start, min(start + step, n_cells)) for start in range(0, n_cells, step)]


def _check(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        msg = f"{name} must be an integer >= {low}, got {value!r}."
        raise ValueError(msg)
    return int(value)


@doc_params()
def simulate(
    *,
    n_cells: int | None = None,
    n_genes: int | None = None,
    n_programs: int | None = None,
    n_cell_types: int | None = None,
    n_batches: int | None = None,
    preset: Literal["large", "small"] | None = None,
    random_state: int | None = 0,
    x_distribution: Literal["poisson", "gamma", "lognormal", "normal", "exponential"] = "poisson",
    x_rate: Literal["linear"] | float | Sequence[float] | np.ndarray | None = None,
    mask_density: float | Sequence[float] | np.ndarray | None = None,
    connectivity_density: float | None = None,
    connectivity: np.ndarray | None = None,
    batch_sd: float | None = None,
    likelihood: Literal["deterministic", "poisson", "nb"] = "deterministic",
    library_size: float | None = None,
    library_sd: float = 0.3,
    dispersion: float = 2.0,
) -> AnnData:
    r"""Simulate counts from the paper's hierarchical generative process (its Figure 1B).

    For cell :math:`c`, program :math:`i` and gene :math:`g`:

    .. math::

        X_{{ci}} &\sim \mathcal{{D}}(\lambda_i), \quad \lambda_i = 1 + 0.1\,i
            \quad \text{{(core programs)}} \\
        b_c &\sim \mathrm{{Uniform}}\{{0, \dots, n_\text{{batches}} - 1\}}, \quad
            B_{{ci}} \sim N(b_c, \sigma_B^2) \quad \text{{(batch effects)}} \\
        X'_{{ci}} &= X_{{ci}} + B_{{ci}} \\
        t_c &\sim \mathrm{{Uniform}}\{{0, \dots, n_\text{{cell\_types}} - 1\}}, \quad
            K_{{ti}} \sim \mathrm{{Bernoulli}}(\rho_A), \quad A_{{ci}} = K_{{t_c i}}
            \quad \text{{(cell-type factors)}} \\
        X''_{{ci}} &= X'_{{ci}} \, A_{{ci}} \\
        M_{{gi}} &\sim \mathrm{{Bernoulli}}(\rho_M), \qquad Y_{{cg}} = \sum_i M_{{gi}} X''_{{ci}}.

    :math:`\mathcal{{D}}` is ``x_distribution`` with mean :math:`\lambda_i`.
    ``likelihood="deterministic"`` (the paper's choice) keeps :math:`Y` as the observed
    "counts". The count likelihoods draw :math:`\ell_c \sim \mathrm{{LogNormal}}(\log L,
    \sigma_\ell^2)`, :math:`\mu_{{cg}} = \ell_c \, Y^+_{{cg}} / \overline{{\sum_g Y^+}}` (mean
    total count :math:`L`) and then counts :math:`\sim \mathrm{{Poisson}}(\mu_{{cg}})` or
    :math:`\mathrm{{NB}}(\mu_{{cg}}, \theta)` with variance :math:`\mu + \mu^2/\theta`.

    Presets follow the paper's simulation code; any explicit argument overrides the preset:

    * ``"large"``: 100 programs with :math:`\lambda_i = 1 + 0.1 i`, 3 batches
      (:math:`\sigma_B = 0.1`), 40 cell types with :math:`\rho_A = 0.3`, 20,000 genes with
      :math:`\rho_M = 0.1`, 100,000 cells (use ``n_cells``/``n_genes`` to scale down).
    * ``"small"``: 3 regulators, activity :math:`X \sim \mathrm{{Poisson}}(2)` times an
      accessibility drawn per cell, :math:`A_{{ci}} \sim \mathrm{{Bernoulli}}(0.5, 0.1, 0.9)`,
      no batch effect, 5 genes through a fixed 5 x 3 regulation matrix, 12,000 cells. Cell types
      are then the accessibility patterns (e.g. ``"101"``).

    With ``n_cell_types=0`` the mask is drawn per cell as in the small preset; ``obs['cell_type']``
    is then the accessibility pattern (``"none"`` for more than 8 programs).

    Parameters
    ----------
    n_cells, n_genes, n_programs, n_cell_types, n_batches
        Sizes; ``None`` takes the preset's value.
    preset
        ``"large"``, ``"small"`` or ``None`` (then all sizes must be given; the other
        arguments default to the large preset's values).
    {random_state}
    x_distribution
        Family of the core programs X: ``"poisson"`` (paper), ``"gamma"`` (shape 2),
        ``"lognormal"`` (sigma 0.5), ``"normal"`` (variance = mean) or ``"exponential"``,
        each with mean :math:`\lambda_i`.
    x_rate
        Program means :math:`\lambda`: ``"linear"`` (:math:`1 + 0.1 i`), a number or one value per program.
    mask_density
        Probability :math:`\rho_A` that a program is on in a cell type (or per program, an array).
    connectivity_density
        Probability :math:`\rho_M` of an edge gene - program in M.
    connectivity
        An explicit M (genes x programs) instead of a random one.
    batch_sd
        Standard deviation :math:`\sigma_B` of the batch shifts.
    likelihood
        ``"deterministic"`` (Y itself), ``"poisson"`` or ``"nb"`` counts around Y.
    library_size
        Mean total count per cell :math:`L` for the count likelihoods; ``None`` uses ``n_genes``.
    library_sd
        Log-scale standard deviation :math:`\sigma_\ell` of library sizes.
    dispersion
        Negative-binomial inverse dispersion :math:`\theta` (larger is closer to Poisson).

    Returns
    -------
    AnnData with

    * ``layers['counts']``: Y (dense, deterministic) or integer counts (CSR); ``X``: ``log1p`` of it;
    * ``obs['cell_type']``, ``obs['batch']`` (categorical), ``obs['library_size']``;
    * ``obsm['X_programs']`` (X), ``obsm['X_batch_shift']`` (B), ``obsm['X_batch_altered']`` (X'),
      ``obsm['X_celltype_mask']`` (A), ``obsm['X_celltype_altered']`` (X''), all cells x programs;
    * ``varm['connectivity']``: M (genes x programs);
    * ``uns['sim']``: ``params``, ``x_rate``, ``celltype_mask`` (cell types x programs, empty for a
      per-cell mask), ``mask_density``.
    """
    seed = resolve_seed(random_state)
    given = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_programs": n_programs,
        "n_cell_types": n_cell_types,
        "n_batches": n_batches,
        "x_rate": x_rate,
        "mask_density": mask_density,
        "connectivity_density": connectivity_density,
        "batch_sd": batch_sd,
    }
    p = _resolve_params(preset, given, connectivity)
    _check_choices(
        p, x_distribution=x_distribution, likelihood=likelihood, dispersion=dispersion, library_sd=library_sd
    )
    rng = np.random.default_rng(seed)
    lat = _draw_latents(rng, p, x_distribution)
    conn = p["conn"]
    if conn is None:
        conn = (rng.random((p["n_genes"], p["n_programs"])) < p["rho_m"]).astype(np.float32)
    lib_target = float(p["n_genes"] if library_size is None else library_size)
    counts, lib, x_norm = _draw_counts(
        rng,
        lat["x_a"],
        conn,
        likelihood=likelihood,
        lib_target=lib_target,
        library_sd=library_sd,
        dispersion=dispersion,
    )
    adata = _assemble(p, lat, conn, counts=counts, lib=lib, x_norm=x_norm)
    params = {
        "preset": "none" if preset is None else preset,
        **{k: p[k] for k in ("n_cells", "n_genes", "n_programs", "n_cell_types", "n_batches")},
        "random_state": seed,
        "x_distribution": x_distribution,
        "connectivity_density": p["rho_m"],
        "batch_sd": p["sd_b"],
        "likelihood": likelihood,
        "library_size": lib_target,
        "library_sd": float(library_sd),
        "dispersion": float(dispersion),
        "mask_level": "cell_type" if p["n_cell_types"] > 0 else "cell",
    }
    adata.uns["sim"] = {
        "params": params,
        "x_rate": p["rate"],
        "celltype_mask": lat["kmask"],
        "mask_density": p["rho_a"],
    }
    return adata


def _resolve_params(preset: str | None, given: dict[str, Any], connectivity: Any) -> dict[str, Any]:
    """Return the sizes and densities: given values over the preset's, checked."""
    if preset is not None and preset not in PRESETS:
        msg = f"preset must be one of {list(PRESETS)} or None, got {preset!r}."
        raise ValueError(msg)
    missing = [k for k in ("n_cells", "n_genes", "n_programs", "n_cell_types", "n_batches") if given[k] is None]
    if preset is None and missing:
        msg = f"Without a preset, give {', '.join(missing)} (or use preset='large' / 'small')."
        raise ValueError(msg)
    base = PRESETS[preset or "large"]
    p = {k: (base[k] if v is None else v) for k, v in given.items()}
    out: dict[str, Any] = {k: _check(k, p[k], low) for k, low in _SIZE_LOW.items()}
    n_programs = out["n_programs"]
    if connectivity is None and preset == "small" and n_programs == 3 and p["n_genes"] == 5:
        connectivity = SMALL_CONNECTIVITY
    out["n_genes"] = _check("n_genes", p["n_genes"] if connectivity is None else np.shape(connectivity)[0], 1)
    out["rate"] = _program_rates(p["x_rate"], n_programs)
    out["rho_a"] = np.broadcast_to(np.asarray(p["mask_density"], dtype=float), (n_programs,)).copy()
    out["rho_m"] = float(p["connectivity_density"])
    out["sd_b"] = float(p["batch_sd"])
    out["conn"] = None
    if connectivity is not None:
        conn = np.asarray(connectivity, dtype=np.float32)
        if conn.ndim != 2 or conn.shape[1] != n_programs or given["n_genes"] not in (None, conn.shape[0]):
            msg = f"connectivity must be a (genes x {n_programs}) matrix matching n_genes, got shape {conn.shape}."
            raise ValueError(msg)
        out["conn"] = conn
    return out


_SIZE_LOW = {"n_cells": 1, "n_programs": 1, "n_cell_types": 0, "n_batches": 1}


def _check_choices(
    p: dict[str, Any], *, x_distribution: str, likelihood: str, dispersion: float, library_sd: float
) -> None:
    if x_distribution not in X_DISTRIBUTIONS:
        msg = f"x_distribution must be one of {X_DISTRIBUTIONS}, got {x_distribution!r}."
        raise ValueError(msg)
    if likelihood not in LIKELIHOODS:
        msg = f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}."
        raise ValueError(msg)
    rho_a, rho_m = p["rho_a"], p["rho_m"]
    if not ((rho_a >= 0) & (rho_a <= 1)).all() or not 0 <= rho_m <= 1:
        msg = f"mask_density and connectivity_density must lie in [0, 1], got {rho_a} and {rho_m}."
        raise ValueError(msg)
    if p["sd_b"] < 0 or dispersion <= 0 or library_sd < 0:
        msg = "batch_sd and library_sd must be >= 0 and dispersion > 0."
        raise ValueError(msg)


def _draw_latents(rng: np.random.Generator, p: dict[str, Any], x_distribution: str) -> dict[str, Any]:
    """Draw the programs X, batch shifts B and the cell-type mask A (in the paper's order)."""
    n_cells, n_programs, n_cell_types = p["n_cells"], p["n_programs"], p["n_cell_types"]
    x = _draw_programs(rng, x_distribution, p["rate"], n_cells)
    batch = rng.integers(p["n_batches"], size=n_cells)
    b = np.repeat(batch[:, None].astype(float), n_programs, axis=1)
    if p["sd_b"] > 0:
        b = rng.normal(b, p["sd_b"])
    x_b = x + b
    if n_cell_types > 0:
        kmask = (rng.random((n_cell_types, n_programs)) < p["rho_a"]).astype(np.float32)
        cell_type = rng.integers(n_cell_types, size=n_cells)
        a = kmask[cell_type]
        type_names = [f"type_{t:02d}" for t in range(n_cell_types)]
        type_labels = pd.Categorical([type_names[t] for t in cell_type], categories=type_names)
    else:
        kmask = np.zeros((0, n_programs), dtype=np.float32)
        a = (rng.random((n_cells, n_programs)) < p["rho_a"]).astype(np.float32)
        if n_programs <= 8:  # the accessibility pattern, e.g. "101"
            type_labels = pd.Categorical(["".join(row) for row in a.astype(int).astype(str)])
        else:
            type_labels = pd.Categorical(["none"] * n_cells)
    return {
        "x": x,
        "batch": batch,
        "b": b,
        "x_b": x_b,
        "a": a,
        "x_a": x_b * a,
        "kmask": kmask,
        "type_labels": type_labels,
    }


def _draw_counts(
    rng: np.random.Generator,
    x_a: np.ndarray,
    conn: np.ndarray,
    *,
    likelihood: str,
    lib_target: float,
    library_sd: float,
    dispersion: float,
) -> tuple[Any, np.ndarray, Any]:
    """Return Y (deterministic) or counts around it, the library sizes and ``log1p`` of the counts."""
    n_cells, n_genes = x_a.shape[0], conn.shape[0]
    # Y and the counts are built in blocks of cells: a float64 cells x genes temporary per step
    # would take several times the memory of the result at the paper's 100,000 x 20,000.
    blocks = _cell_blocks(n_cells, n_genes)

    def _y(rows: slice) -> np.ndarray:
        return (x_a[rows] @ conn.T).astype(np.float32)

    if likelihood == "deterministic":
        y = np.empty((n_cells, n_genes), dtype=np.float32)
        for rows in blocks:
            y[rows] = _y(rows)
        x_norm: Any = np.clip(y, 0, None)
        np.log1p(x_norm, out=x_norm)
        return y, y.sum(axis=1), x_norm
    row_sums = np.concatenate([np.clip(_y(rows), 0, None).sum(axis=1) for rows in blocks])
    mean_total = max(float(row_sums.mean()), 1e-12)
    size = rng.lognormal(np.log(lib_target), library_sd, size=(n_cells, 1))
    parts = []
    for rows in blocks:
        mu = size[rows] * np.clip(_y(rows), 0, None) / mean_total
        if likelihood == "nb":
            mu = rng.gamma(dispersion, mu / dispersion)
        parts.append(sparse.csr_matrix(rng.poisson(mu).astype(np.float32)))
    counts = sparse.vstack(parts, format="csr") if len(parts) > 1 else parts[0]
    x_norm = counts.copy()
    np.log1p(x_norm.data, out=x_norm.data)
    return counts, np.asarray(counts.sum(axis=1)).ravel(), x_norm


def _assemble(
    p: dict[str, Any], lat: dict[str, Any], conn: np.ndarray, *, counts: Any, lib: Any, x_norm: Any
) -> AnnData:
    """Return the AnnData holding the counts, the latent layers in ``obsm`` and M in ``varm``."""
    n_cells, n_genes, n_batches = p["n_cells"], p["n_genes"], p["n_batches"]
    batches = [f"batch_{i}" for i in range(n_batches)]
    obs = pd.DataFrame(
        {
            "cell_type": lat["type_labels"],
            "batch": pd.Categorical([f"batch_{i}" for i in lat["batch"]], categories=batches),
            "library_size": np.asarray(lib, dtype=np.float32).ravel(),
        },
        index=[f"cell_{c:06d}" for c in range(n_cells)],
    )
    adata = AnnData(
        X=x_norm,
        obs=obs,
        var=pd.DataFrame(index=[f"gene_{g:05d}" for g in range(n_genes)]),
        layers={"counts": counts},
    )
    names = {"x": "X_programs", "b": "X_batch_shift", "x_b": "X_batch_altered", "a": "X_celltype_mask"}
    for k, name in {**names, "x_a": "X_celltype_altered"}.items():
        adata.obsm[name] = lat[k].astype(np.float32)
    adata.varm["connectivity"] = conn
    return adata
