"""Layer 6, experiments: sweeps, the powered benchmark, parameter-space analyses and their tables.

Imports from the layers below it (up to engine).
"""
