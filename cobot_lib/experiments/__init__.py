"""Layer 6, experiments: sweeps, ablations, parameter-space analyses and their tables.

Imports from the layers below it (up to engine).
"""
