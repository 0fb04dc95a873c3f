"""SAM-COBOT: cross-block orchestration for parameter-efficient fine-tuning of SAM.

The library behind the workbook's notebooks: backbones (``build_sam``), PEFT and COBOT
(``apply_peft``), the algebra they rest on (``tproduct``, ``quaternion``), data, training and
evaluation. See README.md for the reading order.
"""

from .backbone.foundation import foundation_checkpoint_path, load_foundation_model
from .backbone.sam import build_sam
from .peft import (
    CobotConfig,
    PeftConfig,
    apply_peft,
    count_trainable,
    load_adapter,
    merge,
    save_adapter,
    unload,
)

__all__ = [
    "CobotConfig",
    "PeftConfig",
    "apply_peft",
    "build_sam",
    "count_trainable",
    "foundation_checkpoint_path",
    "load_adapter",
    "load_foundation_model",
    "merge",
    "save_adapter",
    "unload",
]
__version__ = "0.1.0"
