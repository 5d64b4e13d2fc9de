"""Tools: fit and apply sparse autoencoders, annotate and analyse their features."""

__all__: list[str] = []
