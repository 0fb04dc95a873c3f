"""Layer 5, engine: the run config, the trainer, evaluation, checkpoints, distributed helpers,
losses and metrics.

Imports from the layers below it (files, algebra, backbone, peft, data).
"""
