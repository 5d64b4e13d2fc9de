"""Types shared by the DE engines, the enrichment methods and their runner (no implementation here).

Kept apart from any one engine so that the kernels (``_de_fast``, ``_de_deseq2``,
``_scfeaturelens``), the registry (``_engines``) and the runner (``_annotate_core``) import them
without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DEResult:
    """Per contrast (rows) x gene (columns) arrays; NaN where a gene was not tested."""

    log2fc: np.ndarray
    stat: np.ndarray
    pvalue: np.ndarray
    padj: np.ndarray
    base_mean: np.ndarray
    #: ratio of group means, set by engines whose enrichment needs it (Welch)
    fc: np.ndarray | None = None

    @property
    def tested(self) -> np.ndarray:
        return ~np.isnan(self.padj)


@dataclass
class Options:
    """The validated DE / enrichment arguments of one annotation or contrast."""

    de_method: str
    enrichment: str
    flavor: str
    alpha: float
    de_alpha: float
    min_log2fc: float
    min_size: int
    max_size: int | None
    n_jobs: int
    #: pyDESeq2's independent filtering of the adjusted p-values (False: BH over all tested genes)
    independent_filter: bool = False
    #: most up-regulated genes (largest log2FC) in a contrast's study set; None: all
    max_de_genes: int | None = None
    #: ``"elim"``: the ORA decorrelates GO terms along the graph (topGO's elim); ``"classic"``: it does not
    go_algorithm: str = "classic"
    #: the fast engine's dispersion estimator (:data:`~sclens.tl._annotation._dispersion.ESTIMATORS`)
    dispersions: str = "moments"
