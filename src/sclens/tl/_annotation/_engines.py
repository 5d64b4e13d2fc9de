"""DE engines and enrichment methods: small objects with one interface, run by :func:`run_contrasts`.

As decoupler's ``MethodMeta`` + ``_run``: every engine is a class registered by its ``name``, the
runner knows only the interface. Adding an engine means adding one class here (its numerical
kernel may live in its own module).

* A :class:`DEEngine` is built once per call on the expression and the contrasts' cell sets
  (``high`` / ``low``: cells x contrasts membership matrices), doing its fixed-cost work (one pass
  over the expression: size factors, dispersions, group sums); :meth:`DEEngine.test` then returns
  the :class:`~sclens.tl._annotation._types.DEResult` of a slice of contrasts.
* An :class:`Enrichment` is built once per call on the gene sets and the options;
  :meth:`Enrichment.add` receives each slice's DE result and returns its kept terms (a long table)
  or keeps what it needs for :meth:`Enrichment.finish` (methods that run once on all contrasts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from . import _de_fast as fast
from . import _scfeaturelens as sfl
from ._de_deseq2 import deseq2_engine
from ._dispersion import Group, nb_dispersions
from ._enrich import collect, decoupler_method, ora, up_genes
from ._types import DEResult, Options

if TYPE_CHECKING:
    from scipy import sparse

    from ._de import Expression
    from ._enrich import GeneSets

DE_ENGINES: dict[str, type[DEEngine]] = {}
ENRICHMENTS: dict[str, type[Enrichment]] = {}


@dataclass(frozen=True)
class Flavor:
    """What a ``flavor`` of ``annotate_features`` fixes (``None``: the user's ``de_method`` / ``enrichment``).

    ``namespaces``: GO namespaces it keeps; ``strict``: high cells strictly above the quantile (the
    published tool); ``check_sizes``: refuse gene sets that no term of testable size is left in.
    """

    de_method: str | None = None
    enrichment: str | None = None
    namespaces: tuple[str, ...] | None = None
    strict: bool = False
    check_sizes: bool = True


FLAVORS: dict[str, Flavor] = {
    "sclens": Flavor(),
    "scfeaturelens": Flavor("welch", "binomial+mannwhitney", ("BP",), strict=True, check_sizes=False),
}


def de_methods() -> list[str]:
    """Names accepted as ``de_method=`` (engines only used by a flavor are not)."""
    return [name for name, cls in DE_ENGINES.items() if cls.public]


class DEEngine:
    """Differential expression of many contrasts; subclasses set ``name`` and implement ``test``."""

    name: ClassVar[str] = ""
    #: offered as ``de_method=`` (engines only used by a ``flavor`` are not)
    public: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            DE_ENGINES[cls.name] = cls

    def __init__(self, expr: Expression, high: sparse.csc_matrix, low: sparse.csc_matrix, opt: Options) -> None:
        self.expr, self.high, self.low, self.opt = expr, high, low, opt

    def test(self, sl_: slice) -> DEResult:  # pragma: no cover - interface
        raise NotImplementedError


class FastNB(DEEngine):
    """Batched negative-binomial Wald test (:mod:`sclens.tl._annotation._de_fast`), pyDESeq2's model."""

    name = "fast"

    def __init__(self, expr, high, low, opt) -> None:
        super().__init__(expr, high, low, opt)
        self.scan = scan = expr.scan([high, low], hist=opt.dispersions != "moments")
        bins, self.centres = fast.size_bins(scan.size_factors)
        onehot = fast.bin_onehot(bins, self.centres.size)
        inv_s = 1.0 / scan.size_factors
        self.parts = [
            (np.diff(m.indptr), (m.T @ onehot).toarray(), (m.T @ inv_s) / np.maximum(np.diff(m.indptr), 1))
            for m in (high, low)
        ]

    def groups(self, sl_: slice) -> tuple[Group, Group]:
        """Return the high and low :class:`~sclens.tl._annotation._dispersion.Group` of contrasts ``sl_``."""
        s = self.scan
        return tuple(
            Group(n[sl_], nbin[sl_], inv[sl_], s.sums[k][sl_], s.zsums[k][sl_], s.z2sums[k][sl_])
            for k, (n, nbin, inv) in enumerate(self.parts)
        )

    def test(self, sl_: slice) -> DEResult:
        high, low = self.groups(sl_)
        hist = None if self.scan.hist is None else self.scan.hist[sl_]
        disp = nb_dispersions(high, low, self.centres, hist, estimator=self.opt.dispersions)
        return fast.nb_wald(high, low, self.centres, disp, filtering=self.opt.independent_filter)


class DESeq2(DEEngine):
    """One pyDESeq2 run per contrast (:mod:`sclens.tl._annotation._de_deseq2`), the reference."""

    name = "deseq2"

    def __init__(self, expr, high, low, opt) -> None:
        super().__init__(expr, high, low, opt)
        self.cells = [_members(m) for m in (high, low)]

    def test(self, sl_: slice) -> DEResult:
        return deseq2_engine(
            self.expr, self.cells[0][sl_], self.cells[1][sl_], n_jobs=self.opt.n_jobs,
            independent_filter=self.opt.independent_filter,
        )  # fmt: skip


class Welch(DEEngine):
    """The published tool's Welch t-test on library-normalised expression; ``fc``: ratio of means."""

    name = "welch"
    public = False

    def __init__(self, expr, high, low, opt) -> None:
        super().__init__(expr, high, low, opt)
        self.scan = expr.scan([high, low], size_factors="library")
        self.n = [np.diff(m.indptr) for m in (high, low)]

    def test(self, sl_: slice) -> DEResult:
        s = self.scan
        de, fc = sfl.welch(
            s.zsums[0][sl_], s.z2sums[0][sl_], self.n[0][sl_], s.zsums[1][sl_], s.z2sums[1][sl_], self.n[1][sl_]
        )
        de.fc = fc
        return de


def _members(m: sparse.csc_matrix) -> list[np.ndarray]:
    return [m.indices[m.indptr[j] : m.indptr[j + 1]] for j in range(m.shape[1])]


class Enrichment:
    """Gene-set test of DE results; subclasses set ``name`` and implement ``add`` (and ``finish``)."""

    name: ClassVar[str] = ""
    #: column the results are sorted by within a feature, and the effect-size column
    order: ClassVar[str] = "pvalue"
    effect: ClassVar[str] = "odds_ratio"

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            ENRICHMENTS[cls.name] = cls

    def __init__(self, gs: GeneSets, opt: Options, ids: np.ndarray, genes: pd.Index) -> None:
        self.gs, self.opt, self.ids, self.genes = gs, opt, ids, genes

    def add(self, de: DEResult, sl_: slice) -> pd.DataFrame | None:  # pragma: no cover - interface
        """Kept terms of contrasts ``sl_`` (or ``None`` when the method waits for :meth:`finish`)."""
        raise NotImplementedError

    def finish(self) -> pd.DataFrame | None:
        """Kept terms of the contrasts held back by :meth:`add`."""
        return None


class ORA(Enrichment):
    """Hypergeometric test of the up-regulated genes; ties of saturated p broken by mean log2FC."""

    name = "ora"

    def add(self, de, sl_):
        o = self.opt
        study = up_genes(de, de_alpha=o.de_alpha, min_log2fc=o.min_log2fc, max_genes=o.max_de_genes)
        res = ora(study, de.tested, self.gs, min_size=o.min_size, max_size=o.max_size)
        lfc_sum = self.gs.matrix @ np.nan_to_num(de.log2fc).T
        res["mean_log2fc"] = lfc_sum / np.maximum(res["set_size"], 1)
        with np.errstate(invalid="ignore"):
            keep = res["padj"] < o.alpha  # BH within each feature
        return collect(res, self.gs, self.ids[sl_], keep)


class BinomialMannWhitney(Enrichment):
    """The published tool's GO test (needs the Welch engine's ``fc``)."""

    name = "binomial+mannwhitney"

    def add(self, de, sl_):
        res = sfl.go_test(de, de.fc, sfl.study_sets(de, de.fc), self.gs)
        return collect(res, self.gs, self.ids[sl_], (res["n_overlap"] >= 1) & (res["pvalue"] <= self.opt.alpha))


class Decoupler(Enrichment):
    """``decoupler.mt.<enrichment>`` run once on the contrasts x genes matrix of DE statistics."""

    name = "decoupler"
    order = "padj"
    effect = "score"

    def __init__(self, gs, opt, ids, genes) -> None:
        super().__init__(gs, opt, ids, genes)
        shape = (len(ids), len(genes))
        self.stat = np.zeros(shape, dtype=np.float32)
        self.study = np.zeros(shape, dtype=bool)
        self.tested = np.zeros(shape, dtype=bool)

    def add(self, de, sl_):
        o = self.opt
        self.stat[sl_] = np.nan_to_num(de.stat)
        self.study[sl_] = (
            up_genes(de, de_alpha=o.de_alpha, min_log2fc=o.min_log2fc, max_genes=o.max_de_genes) & de.tested
        )
        self.tested[sl_] = de.tested

    def finish(self):
        o = self.opt
        flag = np.where(self.tested, 0.0, np.nan)
        de_all = DEResult(flag, self.stat, flag, flag, flag)
        names = [str(int(f)) for f in self.ids]
        res = decoupler_method(o.enrichment, de_all, self.study, self.gs, names, self.genes, min_size=o.min_size)
        with np.errstate(invalid="ignore"):
            keep = (res["padj"] < o.alpha) & (res["score"] > 0)
        return collect(res, self.gs, self.ids, keep)


def pick(opt: Options) -> tuple[type[DEEngine], type[Enrichment]]:
    """Return the DE engine and enrichment class for these options."""
    flavor = FLAVORS[opt.flavor]
    de_name, enr_name = flavor.de_method or opt.de_method, flavor.enrichment or opt.enrichment
    return DE_ENGINES[de_name], ENRICHMENTS.get(enr_name, Decoupler)
