"""PEFT for SAM's image encoder: LoRA, Adaptformer and COBOT on top of either.

summary = apply_peft(sam, "lora", cobot=True)   # freeze, inject, report trainable params
save_adapter(sam, "runs/x"); load_adapter(build_sam("tiny"), "runs/x")
merge(sam)                                      # fold linear adapters for inference
load_official(build_sam("vit_b"), read_official("their.pth"))  # the authors' checkpoints
"""

from .cobot import CobotBridge, RelationMatrix
from .config import (
    DEFAULT_RANK,
    METHODS,
    PEFT_METHODS,
    CobotConfig,
    PeftConfig,
    differing_keys,
    make_config,
)
from .inject import (
    PeftSummary,
    apply_peft,
    cobot_bridges,
    count_trainable,
    is_adapter_name,
    parameter_groups,
    peft_config_of,
    relation_of,
    summarize,
    unload,
)
from .io import (
    adapter_state_dict,
    backbone_signature,
    load_adapter,
    read_adapter_config,
    save_adapter,
)
from .layers import AdaptformerMLP, LoRAQKV
from .merge import merge
from .official import load_official, read_official, save_official

__all__ = [
    "AdaptformerMLP",
    "CobotBridge",
    "CobotConfig",
    "DEFAULT_RANK",
    "LoRAQKV",
    "METHODS",
    "PEFT_METHODS",
    "PeftConfig",
    "PeftSummary",
    "RelationMatrix",
    "adapter_state_dict",
    "apply_peft",
    "backbone_signature",
    "cobot_bridges",
    "count_trainable",
    "is_adapter_name",
    "differing_keys",
    "load_adapter",
    "load_official",
    "make_config",
    "merge",
    "parameter_groups",
    "peft_config_of",
    "read_adapter_config",
    "read_official",
    "relation_of",
    "save_adapter",
    "save_official",
    "summarize",
    "unload",
]
