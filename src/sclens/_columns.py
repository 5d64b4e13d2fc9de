"""The columns of an SAE run's features table (``adata.uns[sae_key]['features']``) and their one writer.

:data:`COLUMNS` names every column, the tool that writes it, its dtype, the value of features the
tool did not cover and what it means; ``{column}`` stands for an ``obs`` column scored by
:func:`sclens.tl.feature_alignment`. :func:`write_columns` is the one way a tool writes the table
(it refuses an unregistered column or a writer that does not own it), ``docs/storage.md`` is
checked against :func:`markdown_table`, and the atlas shows the columns marked ``atlas``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData


@dataclass(frozen=True)
class Column:
    """One features-table column: ``writers`` (public tools), ``dtype``, ``fill`` (rows not covered), meaning."""

    name: str
    writers: tuple[str, ...]
    dtype: str
    fill: Any
    description: str
    atlas: bool = False  # shown as an extra column of the atlas table when present


_FIT, _BASE, _SPEC = "sl.tl.fit_sae", "sl.tl.baseline_features", "sl.tl.feature_specificity"  # _FIT: and encode
_ANN, _RED = "sl.tl.annotate_features", "sl.tl.term_redundancy"
_ALIGN, _NULL = "sl.tl.feature_alignment", "sl.tl.annotation_null"
COLUMNS: tuple[Column, ...] = (
    Column("frequency", (_FIT, _BASE), "float64", np.nan, "fraction of cells in which the feature is active"),
    Column("mean_activation", (_FIT, _BASE), "float64", np.nan, "mean activation over all cells"),
    Column("max_activation", (_FIT, _BASE), "float64", np.nan, "largest activation"),
    Column("kind", (_FIT, _BASE, _SPEC), "str", "", "`live` / `dead` (fit); `local` / `global` / `dead` (specificity)"),
    Column("component", (_BASE,), "int64", -1, "baseline component the feature is a part of"),
    Column("sign", (_BASE,), "str", "", "`+` / `-`: positive or negative part of the component"),
    Column("top_group", (_SPEC,), "str", "", "the local group, or the group with the largest effect"),
    Column("effect", (_SPEC,), "float64", np.nan, "mean activation in `top_group` minus the mean outside it"),
    Column("auc", (_SPEC,), "float64", np.nan, "AUROC of `top_group` against the other cells"),
    Column("pvalue", (_SPEC,), "float64", np.nan, "p-value of `top_group`"),
    Column("padj", (_SPEC,), "float64", np.nan, "BH-adjusted p-value of `top_group` (NaN for `method='paper'`)"),
    Column("n_groups_significant", (_SPEC,), "int64", 0, "groups in which the feature is significantly higher"),
    Column("n_terms", (_ANN,), "int64", 0, "kept terms of the annotation"),
    Column("best_term", (_ANN,), "str", "", "the kept term with the smallest p-value"),
    Column("best_padj", (_ANN,), "float64", np.nan, "adjusted p-value of `best_term`"),
    Column("n_high", (_ANN,), "int64", 0, "cells of the feature's high set"),
    Column("n_low", (_ANN,), "int64", 0, "cells of the feature's low set"),
    Column("skip_reason", (_ANN,), "str", "", "why the feature was not tested (empty: tested)"),
    Column("n_term_clusters", (_ANN, _RED), "int64", 0, "themes among the kept terms (grouped by shared genes)",
           atlas=True),
    Column("representative_term", (_ANN, _RED), "str", "", "most specific term of the best term's theme"),
    Column("top_genes", (_ANN, _RED), "str", "", "top up-regulated genes, comma-separated"),
    Column("label", (_ANN, _RED), "str", "", "readable label: representative term, top genes, top group"),
    Column("{column}_best", (_ALIGN,), "str", "", "category of `obs[column]` with the highest AUROC"),
    Column("{column}_auroc", (_ALIGN,), "float64", np.nan, "that AUROC"),
    Column("{column}_f1", (_ALIGN,), "float64", np.nan, "held-out F1 for that category"),
    Column("batch_driven", (_ALIGN,), "bool", fill=False,
           description="a technical column separates the feature better than any biological one"),
    Column("stability", ("sl.tl.feature_stability",), "float64", np.nan,
           "decoder |cosine| of the feature's match in refits with other seeds", atlas=True),
    Column("reference_feature", ("sl.tl.feature_stability",), "int64", -1,
           "feature of the reference run a consensus feature stands for"),
    Column("null_terms", (_NULL,), "float64", np.nan, "expected kept terms under the null (the larger null mean)"),
    Column("annotation_fdr", (_NULL,), "float64", np.nan, "permutation FDR of calling the feature annotated",
           atlas=True),
)  # fmt: skip
_BY_NAME = {c.name: c for c in COLUMNS if "{" not in c.name}
_PATTERNS = [(re.compile("^(.+)" + re.escape(c.name.removeprefix("{column}")) + "$"), c) for c in COLUMNS
             if "{" in c.name]  # fmt: skip


def column(name: str) -> Column | None:
    """Return the registered column ``name`` (``None`` if it is not registered)."""
    if name in _BY_NAME:
        return _BY_NAME[name]
    return next((c for pattern, c in _PATTERNS if pattern.match(name)), None)


def alignment_columns(scored: list[str]) -> list[str]:
    """Return the features-table columns :func:`sclens.tl.feature_alignment` writes for the ``scored`` columns."""
    return [c.name.format(column=s) for s in scored for c in COLUMNS if c.name.startswith("{column}")]


def write_columns(
    adata: AnnData, sae_key: str, frame: pd.DataFrame, *, writer: str, n_features: int | None = None
) -> None:
    """Write the columns of ``frame`` (indexed by feature, any subset) to ``adata.uns[sae_key]['features']``.

    Every column must be registered for ``writer``; values are cast to the registered dtype; rows
    not in ``frame`` keep their values (or get the column's ``fill`` when the column is new). A
    table of another size than the run's features is refused. ``n_features`` creates the table.
    """
    for name in frame.columns:
        spec = column(str(name))
        if spec is None or writer not in spec.writers:  # a programming error in the writer
            msg = f"{writer} writes the features-table column {name!r}, which is not registered for it (_columns.py)."
            raise RuntimeError(msg)
    run = adata.uns[sae_key]
    table = run.get("features")
    if not isinstance(table, pd.DataFrame):
        if n_features is None:
            msg = "The SAE run has no features table; re-run `sl.tl.fit_sae` (or `sl.tl.encode`)."
            raise KeyError(msg)
        table = pd.DataFrame(index=pd.Index([str(i) for i in range(n_features)]))
    elif n_features is not None and len(table) != n_features:
        msg = (
            f"The SAE run's features table has {len(table)} rows but the SAE has {n_features} features: it belongs "
            "to another SAE. Re-run `sl.tl.fit_sae` / `sl.tl.encode` to rebuild it."
        )
        raise ValueError(msg)
    table = table.copy()
    table.index = table.index.astype(str)
    frame = frame.set_axis(frame.index.astype(str))
    unknown = frame.index.difference(table.index)
    if len(unknown):
        msg = f"Features {list(unknown[:5])} are not in the SAE run's features table ({len(table)} features)."
        raise KeyError(msg)
    for name in frame.columns:
        spec = column(str(name))
        dtype = object if spec.dtype == "str" else spec.dtype
        values = frame[name].astype(str) if spec.dtype == "str" else frame[name]
        if name not in table.columns:
            table[name] = pd.Series(spec.fill, index=table.index).astype(dtype)
        elif spec.dtype == "str":
            table[name] = table[name].astype(object)
        table.loc[frame.index, name] = values.to_numpy().astype(dtype)
        table[name] = table[name].astype(dtype)
    run["features"] = table


def markdown_table() -> str:
    """Return the column table of ``docs/storage.md``, built from :data:`COLUMNS`."""
    rows = ["| column | written by | dtype | meaning |", "|---|---|---|---|"]
    for c in COLUMNS:
        rows.append(f"| `{c.name}` | {', '.join(f'`{w}`' for w in c.writers)} | {c.dtype} | {c.description} |")
    return "\n".join(rows)
