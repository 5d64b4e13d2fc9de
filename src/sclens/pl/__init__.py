"""Plots, each paired with the tool whose output it draws."""

__all__: list[str] = []
