"""Data sets and gene sets: toy data, Gene Ontology, GMT files."""

from ._bioc import read_bioconductor_go
from ._gmt import read_gmt, write_gmt
from ._go import gene_aliases, go_gene_sets, go_ontology
from ._immune import immune559_counts, pbmc4000_counts
from ._ontology import GeneOntology
from ._pbmc import pbmc68k_counts
from ._toy import toy

__all__ = [
    "GeneOntology",
    "gene_aliases",
    "go_gene_sets",
    "go_ontology",
    "immune559_counts",
    "pbmc68k_counts",
    "pbmc4000_counts",
    "read_bioconductor_go",
    "read_gmt",
    "toy",
    "write_gmt",
]
