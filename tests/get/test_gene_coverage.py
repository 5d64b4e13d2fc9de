"""Matching gene-set genes to var_names: coverage report, case and alias options."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import sclens as sl
from sclens.get._coverage import match_genes

SETS = {"b_cells": ["CD79A", "MS4A1", "CD19"], "t_cells": ["CD3E", "CD3D"], "other": ["XIST"]}


def _adata(var_names):
    return ad.AnnData(np.zeros((2, len(var_names)), dtype=np.float32), var=pd.DataFrame(index=var_names))


def test_coverage_exact_is_case_sensitive():
    adata = _adata(["CD79A", "Ms4a1", "CD20", "CD3E", "GAPDH"])
    report = sl.get.gene_coverage(adata, gene_sets=SETS)
    assert report["n_var_names"] == 5
    assert report["n_covered"] == 2
    assert report["fraction_covered"] == pytest.approx(0.4)
    assert (report["n_exact"], report["n_case"], report["n_alias"]) == (2, 0, 0)
    assert report["n_set_genes"] == 6
    assert report["n_set_genes_covered"] == 2
    assert (report["n_sets"], report["n_sets_covered"]) == (3, 2)
    assert report["uncovered_examples"] == ["Ms4a1", "CD20", "GAPDH"]


def test_coverage_case_insensitive_and_aliases():
    adata = _adata(["CD79A", "Ms4a1", "CD3E", "GAPDH", "T3D"])
    report = sl.get.gene_coverage(adata, gene_sets=SETS, case_sensitive=False, aliases={"T3D": "CD3D"})
    assert (report["n_exact"], report["n_case"], report["n_alias"]) == (2, 1, 1)
    assert report["n_covered"] == 4
    # the embedded NCBI alias table maps CD20 to MS4A1
    report = sl.get.gene_coverage(_adata(["CD20", "CD19"]), gene_sets=SETS, aliases="human")
    assert (report["n_exact"], report["n_alias"]) == (1, 1)


def test_match_maps_targets_to_var_names():
    targets = [g for genes in SETS.values() for g in genes]
    mapping, counts = match_genes(["Cd79a", "CD20", "CD3E"], targets, case_sensitive=False, aliases={"CD20": "MS4A1"})
    assert mapping == {"CD79A": "Cd79a", "MS4A1": "CD20", "CD3E": "CD3E"}
    assert (counts["exact"], counts["case"], counts["alias"]) == (1, 1, 1)


def test_alias_is_not_used_when_symbol_present():
    # MS4A1 itself is a var name: the alias CD20 must not steal it
    mapping, _ = match_genes(["MS4A1", "CD20"], SETS["b_cells"], aliases={"CD20": "MS4A1"})
    assert mapping == {"MS4A1": "MS4A1"}


def test_bad_alias_argument():
    with pytest.raises(TypeError, match="aliases must be None, an organism name"):
        sl.get.gene_coverage(_adata(["CD19"]), gene_sets=SETS, aliases=3)
    with pytest.raises(KeyError, match="needs columns 'alias' and 'symbol'"):
        sl.get.gene_coverage(_adata(["CD19"]), gene_sets=SETS, aliases=pd.DataFrame({"a": ["x"]}))
