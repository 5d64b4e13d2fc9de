"""Steering internals: change SAE codes, decode, score the perturbed cells."""
