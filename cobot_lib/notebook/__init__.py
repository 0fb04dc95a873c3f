"""Layer 7, notebook: figures, the benchmark panel, notebook parameter checks and the walkthrough
runner.

Imports from every layer below it; nothing in cobot_lib imports it.
"""
