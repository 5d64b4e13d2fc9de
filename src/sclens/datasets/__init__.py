"""Data sets and gene sets: toy data, Gene Ontology, GMT files."""

from ._toy import toy

__all__ = ["toy"]
