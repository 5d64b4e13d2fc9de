"""Data sets and gene sets: toy data, Gene Ontology, GMT files."""

from ._pbmc import pbmc68k_counts
from ._toy import toy

__all__ = ["pbmc68k_counts", "toy"]
