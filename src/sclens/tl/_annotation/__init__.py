"""Annotation internals: DE engines and kernels, cell sets, chunked count passes, enrichment, term redundancy."""
