"""Accessors: rebuild models and read results from an AnnData."""

from ..datasets._coverage import gene_coverage

__all__ = ["gene_coverage"]
