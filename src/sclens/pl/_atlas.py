"""``sl.pl.atlas``: one self-contained, offline HTML page to browse every feature of an SAE run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .._docs import doc_params
from .._features import live_features, resolve_features
from .._readers import annotation, features_table, result, sae_run
from .._utils import atomic_path, check_adata, resolve_seed, sae_activations
from . import _atlas_data as data
from . import _atlas_features as feat
from . import _atlas_near as near

logger = logging.getLogger("sclens")
STATIC = files("sclens.pl") / "_atlas_static"


def _steering_tables(steering: Mapping | None) -> dict[int, pd.DataFrame]:
    """Kept terms of steered vs normal cells per feature, from ``steering``."""
    out: dict[int, pd.DataFrame] = {}
    for f, value in (steering or {}).items():
        table = result(value, "contrast", key="contrast")["results"] if isinstance(value, AnnData) else value
        if not isinstance(table, pd.DataFrame) or "term" not in table:
            msg = (
                f"steering[{f!r}] must be a DataFrame of kept terms with a 'term' column (e.g. "
                "`steered.uns['contrast']['results']`) or an AnnData on which `sl.tl.contrast` ran."
            )
            raise TypeError(msg)
        out[int(f)] = table
    return out


def _stored(adata: AnnData, keys: Mapping[str, str]) -> dict[str, Any]:
    """Return the results the page reads, each through :func:`sclens._readers.result` (``{}`` when absent).

    The annotation must belong to the SAE run shown (:func:`sclens._readers.annotation`), like every
    reader of it: one of another run, or of the run before a refit, is refused.
    """
    sae_key, ann_key = keys["sae_key"], keys["annotation_key"]
    present = result(adata, "annotation", key=ann_key, missing_ok=True) is not None
    ann = annotation(adata, ann_key, sae_key=sae_key) if present else {}
    if not ann:
        logger.info("atlas: no annotation under `adata.uns[%r]`; the page shows no GO terms.", ann_key)
    space = result(adata, "feature_space", key=keys["space_key"], parent=ann_key, missing_ok=True) if ann else {}
    return {
        "annotation": ann, "space": space or {},
        "specificity": result(adata, "specificity", key=keys["specificity_key"], parent=sae_key, missing_ok=True) or {},
        "alignment": result(adata, "alignment", key=keys["alignment_key"], parent=sae_key, missing_ok=True) or {},
    }  # fmt: skip


def _groupby(adata: AnnData, groupby: str | None, spec: dict[str, Any]) -> str | None:
    """Return the obs column colouring the cells: ``groupby``, else specificity's (when still in obs)."""
    if groupby is not None:
        return groupby
    return spec["groupby"] if spec["groupby"] in adata.obs.columns else None


def build_payload(
    adata: AnnData, *, keys: Mapping[str, str], basis: str, groupby: str | None, features: Any, columns: Any,
    steering: Mapping | None, max_cells: int, max_terms: int, n_genes: int, n_neighbours: int, seed: int, title: str,
) -> dict[str, Any]:  # fmt: skip
    """Everything the page shows, as a JSON-able dict (cells: :mod:`._atlas_data`, features: :mod:`._atlas_features`).

    ``keys``: ``sae_key``, ``annotation_key``, ``specificity_key``, ``alignment_key``, ``space_key``.
    """
    sae_key, annotation_key = keys["sae_key"], keys["annotation_key"]
    acts = sae_activations(adata, sae_key)  # also a clear error when the run is missing
    table = features_table(adata, sae_key)
    table = pd.DataFrame() if table is None else table
    stored = _stored(adata, keys)
    ann = stored["annotation"]
    key = data.basis_key(adata, basis)
    feats = np.sort(resolve_features(features, acts.shape[1], live=live_features(acts)))
    cells = data.sample_cells(adata.n_obs, max_cells, seed)
    aligned = feat.alignment_columns(stored["alignment"])
    extra = feat.extra_columns(table, columns, aligned=aligned)
    spec = feat.specificity(stored["specificity"], feats)
    return {
        "meta": {
            "title": title, "sae_key": sae_key, "annotation_key": annotation_key, "n_cells": int(adata.n_obs),
            "n_features": int(acts.shape[1]), "n_live": int(feats.size), "columns": extra,
            "labels": {c: feat.column_label(c) for c in extra}, "sclens": _version(),
            "term_rule": feat.term_rule(ann.get("params", {}), ann.get("results")),
        },
        "features": feat.feature_rows(table, feats, extra),
        "cells": data.embedding(adata, key, cells),
        "groups": data.groups(adata, _groupby(adata, groupby, spec), cells),
        "act": data.activations(acts, cells, feats),
        "terms": feat.terms(ann.get("results"), feats, max_terms),
        "genes": feat.genes(ann, feats, n_genes),
        "skipped": feat.skipped(ann, table, feats),
        "trust": feat.trust(table, feats, aligned=aligned),
        "spec": spec,
        "steer": feat.steering(_steering_tables(steering), feats, max_terms),
        "near": {
            "decoder": near.by_decoder(sae_run(adata, sae_key, need=()).get("weights"), feats, n_neighbours),
            "terms": near.by_terms(ann.get("results"), stored["space"], feats, n_neighbours),
        },
    }  # fmt: skip


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sclens")
    except PackageNotFoundError:  # pragma: no cover
        return ""


def render(payload: dict[str, Any]) -> str:
    """Return the HTML page: template with the CSS, the JS and the JSON payload inlined."""
    # every "<" as \u003c: no "</script>" nor "<!--" inside the data can end or hide the script element
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    page = (STATIC / "atlas.html").read_text(encoding="utf-8")
    for name, value in (
        ("TITLE", _escape(payload["meta"]["title"])),
        ("CSS", (STATIC / "atlas.css").read_text(encoding="utf-8")),
        ("JS", (STATIC / "atlas.js").read_text(encoding="utf-8").replace("</", "<\\/")),
        ("DATA", text),
    ):
        page = page.replace(f"/*__{name}__*/", value)
    return page


DATA_SUFFIXES = (".h5ad", ".h5", ".hdf5", ".h5mu", ".zarr", ".loom", ".csv", ".tsv", ".gz", ".npz", ".pt")


def _is_page(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(64).lstrip().lower().startswith((b"<!doctype html", b"<html"))


def _check_path(adata: AnnData, path: str | os.PathLike) -> Path:
    """Return the HTML file to write; refuse it when it is a directory or would overwrite anything but an HTML page."""
    path = Path(path)
    if path.is_dir():
        msg = f"path {str(path)!r} is a directory; pass the HTML file to write, e.g. {str(path / 'atlas.html')!r}."
        raise IsADirectoryError(msg)
    backed = getattr(adata, "filename", None)
    if not path.parent.is_dir():
        msg = f"path {str(path)!r}: directory {str(path.parent)!r} does not exist; create it first."
        raise FileNotFoundError(msg)
    other = path.is_file() and not _is_page(path)
    if other or path.suffix.lower() in DATA_SUFFIXES or (backed and path.resolve() == Path(backed).resolve()):
        msg = (
            f"path {str(path)!r} {'exists and is not an HTML page' if path.exists() else 'names a data file'}; "
            "the atlas writes one HTML page and never overwrites another file (nothing was written). "
            "Pass a new path ending in .html, e.g. 'atlas.html'."
        )
        raise ValueError(msg)
    return path


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@doc_params()
def atlas(
    adata: AnnData,
    path: str | os.PathLike,
    *,
    sae_key: str = "sae",
    annotation_key: str = "sae_go",
    specificity_key: str = "specificity",
    alignment_key: str = "alignment",
    space_key: str = "feature_space",
    basis: str = "umap",
    groupby: str | None = None,
    features: int | Sequence[int] | None = None,
    columns: str | list[str] | None = None,
    steering: Mapping[int, Any] | None = None,
    max_cells: int = 20_000,
    max_terms: int = 30,
    n_genes: int = 20,
    n_neighbours: int = 8,
    title: str | None = None,
    random_state: int | None = 0,
) -> Path:
    """Write a feature atlas: one self-contained HTML page that browses every live feature offline.

    The page (no server, no internet: data, script and style are inlined) holds a sortable table
    of the features (label, kind, top group, activity = fraction of active cells, number of terms,
    alignment, null and stability columns when present) with a search box that matches gene names
    exactly and labels, GO term names and IDs and cell groups as substrings, and a card per
    feature: the embedding coloured by cell group (with a legend) and by the feature's activation
    (with a colour bar in activation units); its top up-regulated genes with log2 fold change and
    padj, sorted by padj; its kept GO terms with p-value and padj and the rule that kept them, or
    the reason the feature was not annotated; the evidence stored on how far to trust it
    (alignment to obs labels, annotation null FDR, stability); its mean activation per group; the
    terms of steered cells when given; and links to the closest features by decoder direction
    (cosine of ``W_dec`` rows) and by shared GO terms (Jaccard index of the kept term sets).

    The annotation is refused, as by :func:`sclens.get.feature_terms`, when it was computed from
    another SAE run than ``adata.uns[sae_key]`` (another key, or the run before a refit). ``path``
    is never an existing file other than an HTML page (the input ``.h5ad`` is refused).

    Size: about 9.6 MB for 1,000 TopK features (k=32) of 50,000 cells (20,000 shown, 30 terms per
    feature), 12.6 MB with k=64 and 50 terms (``benchmarks/results/atlas_size.json``); activations of
    the shown cells are stored sparsely with 8-bit values, coordinates with 16 bits.

    Parameters
    ----------
    {adata}
    path
        HTML file to write (written to a temporary file first, then renamed); an existing file is
        replaced only when it is an HTML page.
    sae_key
        Key of the SAE run: activations in ``adata.obsm[f"X_{{sae_key}}"]``, features table in
        ``adata.uns[sae_key]['features']``.
    annotation_key
        Key of the annotation (:func:`sclens.tl.annotate_features`); GO terms and top genes are read
        from ``adata.uns[annotation_key]``.
    specificity_key
        Key of the :func:`sclens.tl.feature_specificity` result in ``adata.uns[sae_key]`` (mean
        activation per group); left out when absent.
    alignment_key
        Key of the :func:`sclens.tl.feature_alignment` result in ``adata.uns[sae_key]``: the
        features-table columns of the label columns it scored are shown; left out when absent.
    space_key
        Key of the :func:`sclens.tl.feature_space` result in ``adata.uns[annotation_key]`` (closest
        features by UMAP distance; without it, by the Jaccard similarity of the term sets).
    basis
        Embedding drawn: ``adata.obsm[f"X_{{basis}}"]`` (or ``adata.obsm[basis]``), its first two columns.
    groupby
        Column of ``adata.obs`` that colours the cells on the card (the largest 29 groups, the
        others pooled as "other"); ``None``: the ``groupby`` of :func:`sclens.tl.feature_specificity`
        when it was run, else no group colouring.
    features
        Features listed; ``None``: every feature whose ``kind`` is not ``"dead"``.
    columns
        Extra columns of the features table shown in the table (the columns of the alignment,
        term clustering and null controls are added automatically).
    steering
        ``{{feature: kept terms}}`` of steered vs normal cells: a DataFrame such as
        ``steered.uns['contrast']['results']`` or the steered AnnData after :func:`sclens.tl.contrast`.
    max_cells
        Cells drawn in the scatter plots (a seeded sample); at most 65,535.
    max_terms
        Term themes listed per feature, each by its most specific term (the number of kept terms is in the
        table), and steering terms per feature.
    n_genes
        Up-regulated genes listed per feature (``adata.uns[annotation_key]['top_genes']``).
    n_neighbours
        Closest features linked from each card.
    title
        Page title; ``None``: ``"sclens atlas: <sae_key>"``.
    {random_state}

    Returns
    -------
    The path written.
    """
    check_adata(adata)
    path = _check_path(adata, path)
    if not 1 <= int(max_cells) <= data.MAX_CELLS:
        msg = f"max_cells must be between 1 and {data.MAX_CELLS}, got {max_cells!r}."
        raise ValueError(msg)
    keys = {
        "sae_key": sae_key, "annotation_key": annotation_key, "specificity_key": specificity_key,
        "alignment_key": alignment_key, "space_key": space_key,
    }  # fmt: skip
    payload = build_payload(
        adata, keys=keys, basis=basis, groupby=groupby, features=features, columns=columns,
        steering=steering, max_cells=int(max_cells), max_terms=int(max_terms), n_genes=int(n_genes),
        n_neighbours=int(n_neighbours), seed=resolve_seed(random_state), title=title or f"sclens atlas: {sae_key}",
    )  # fmt: skip
    page = render(payload)
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    logger.info("atlas: %d features, %.1f MB written to %s", payload["meta"]["n_live"], len(page) / 1e6, path)
    return path
