"""sl.get.feature_terms reads one feature's terms."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

import sclens as sl

_spec = importlib.util.spec_from_file_location("tl_conftest", pathlib.Path(__file__).parents[1] / "tl" / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)


@pytest.fixture(scope="module")
def annotated():
    ad = _mod.toy_sae(n_cells=800, n_genes=300, random_state=0, extra=True)
    sl.tl.annotate_features(ad, gene_sets=ad.uns["toy"]["gene_sets"], layer="counts", min_size=3, high_quantile=0.98,
                            features=[0, 1, 16, 17])  # fmt: skip
    return ad


def test_feature_terms(annotated):
    t = sl.get.feature_terms(annotated, feature=1)
    assert t.index[0] == "program_01"
    assert t["pvalue"].is_monotonic_increasing
    assert {"name", "namespace", "n_overlap", "set_size", "n_de", "odds_ratio", "pvalue", "padj"} <= set(t.columns)


def test_feature_terms_errors(annotated):
    with pytest.raises(KeyError, match=r"Feature 17 was skipped by annotate_features: high set has 4 cells"):
        sl.get.feature_terms(annotated, feature=17)
    with pytest.raises(KeyError, match="Feature 5 was not annotated under key 'sae_go'"):
        sl.get.feature_terms(annotated, feature=5)
    with pytest.raises(KeyError, match=r"No feature annotation under `adata.uns\['go'\]\['results'\]`"):
        sl.get.feature_terms(annotated, feature=1, key="go")
