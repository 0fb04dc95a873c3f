"""Layer 1, algebra: the T-product family and quaternions, as the model runs them and the notebooks
teach them.

Imports nothing from cobot_lib.
"""
