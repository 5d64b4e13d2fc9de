"""Accessors: rebuild models and read results from an AnnData."""

__all__: list[str] = []
