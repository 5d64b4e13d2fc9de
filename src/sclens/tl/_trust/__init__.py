"""Trust tools: alignment to labels, null controls, baselines, run comparison."""
