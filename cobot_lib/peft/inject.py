"""Freeze SAM and inject PEFT (+ COBOT) modules into its image encoder: one call, ``apply_peft``.

Shaped after micro-sam's ``peft_sam.py`` (a small "surgery" per method, a wrapper that freezes
and injects) and loralib's ``mark_only_lora_as_trainable``. Everything is checked and every new
module is built before the model is touched, and a failure while swapping modules puts the
originals back, so a failed call leaves the model as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segment_anything.modeling import Sam
from torch import nn

from .cobot import CobotBridge, RelationMatrix
from .config import PEFT_METHODS, CobotConfig, PeftConfig, make_config
from .layers import AdaptformerMLP, LoRAQKV

__all__ = [
    "apply_peft",
    "unload",
    "count_trainable",
    "parameter_groups",
    "PeftSummary",
    "peft_config_of",
    "relation_of",
    "cobot_bridges",
    "detach_relation",
    "forget_peft",
    "is_adapter_name",
    "summarize",
]

CONFIG_ATTR = "peft_config"
RELATION_ATTR = "cobot_relation"
_SAVED_FLAGS_ATTR = "_peft_saved_requires_grad"


def count_trainable(module: nn.Module) -> int:
    """Number of parameters with requires_grad (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def peft_config_of(sam: Sam) -> PeftConfig | None:
    """The PeftConfig applied to ``sam``, or None for a plain SAM."""
    return getattr(sam, CONFIG_ATTR, None)


def relation_of(sam: Sam) -> RelationMatrix | None:
    """The encoder's shared RelationMatrix (COBOT only)."""
    return getattr(sam.image_encoder, RELATION_ATTR, None)


def cobot_bridges(sam: Sam) -> list[CobotBridge]:
    """All COBOT bridges in module order (their ``index`` is their row of S)."""
    bridges = [m for m in sam.image_encoder.modules() if isinstance(m, CobotBridge)]
    return sorted(bridges, key=lambda b: b.index)


#: Substrings that mark the parameters and buffers apply_peft adds: LoRA's A/B, Adaptformer's
#: branch, COBOT's bridges and the relation matrix (the one spelling of "is this an adapter?").
ADAPTER_MARKERS = (".lora_", ".adapter_")
COBOT_MARKERS = (".cobot", RELATION_ATTR)


def is_adapter_name(name: str, cobot: bool = False) -> bool:
    """Whether ``name`` belongs to an injected PEFT module (``cobot``: to COBOT only)."""
    if cobot:
        return any(m in name for m in COBOT_MARKERS)
    return any(m in name for m in ADAPTER_MARKERS)


def _group(name: str) -> str:
    """The group a parameter is reported under (the paper's Table 4 counts the image encoder)."""
    if name.startswith("mask_decoder."):
        return "mask_decoder"
    if name.startswith("prompt_encoder."):
        return "prompt_encoder"
    if name.endswith(f"{RELATION_ATTR}.S"):
        return "cobot_relation_S"
    if ".head." in name and is_adapter_name(name, cobot=True):
        return "cobot_head_W"
    if is_adapter_name(name, cobot=True):
        return "cobot_coefficients"
    if is_adapter_name(name):
        return "peft"
    return "image_encoder_backbone"


def parameter_groups(sam: Sam, trainable_only: bool = True) -> dict[str, int]:
    """Parameter counts by group: peft, cobot_coefficients, cobot_relation_S, cobot_head_W, ..."""
    groups: dict[str, int] = {}
    for name, p in sam.named_parameters():
        if p.requires_grad or not trainable_only:
            groups[_group(name)] = groups.get(_group(name), 0) + p.numel()
    return groups


@dataclass(frozen=True)
class PeftSummary:
    """What ``apply_peft`` did: the config and trainable parameters by group."""

    config: PeftConfig
    groups: dict[str, int]
    num_modules: int

    @property
    def image_encoder(self) -> int:
        """Trainable parameters of the image encoder (the number Table 4 reports)."""
        skip = ("mask_decoder", "prompt_encoder")
        return sum(n for g, n in self.groups.items() if g not in skip)

    @property
    def cobot(self) -> int:
        return sum(n for g, n in self.groups.items() if g.startswith("cobot"))

    @property
    def total(self) -> int:
        return sum(self.groups.values())

    def table(self) -> str:
        rows = [f"| {g} | {n:,} |" for g, n in sorted(self.groups.items())]
        rows += [
            f"| **image encoder (Table 4)** | **{self.image_encoder:,}** |",
            f"| **all trainable** | **{self.total:,}** |",
        ]
        return "\n".join(["| group | trainable parameters |", "|---|---:|", *rows])

    def __str__(self) -> str:
        c = self.config
        name = c.method + (f" (V={c.rank})" if c.rank else "") + (" + COBOT" if c.cobot else "")
        return f"{name}: {self.num_modules} PEFT modules\n{self.table()}"


def _check_sam(sam: Any) -> None:
    if not isinstance(sam, Sam):
        raise TypeError(f"apply_peft expects a segment_anything Sam, got {type(sam).__name__}")
    if peft_config_of(sam) is not None:
        raise ValueError(
            f"this SAM already has PEFT applied ({peft_config_of(sam).method}); "
            "call cobot_lib.unload(sam) first"
        )
    for i, block in enumerate(sam.image_encoder.blocks):
        qkv = getattr(getattr(block, "attn", None), "qkv", None)
        if not isinstance(qkv, nn.Linear) or not hasattr(block, "mlp"):
            raise ValueError(f"image_encoder.blocks[{i}] is not a plain SAM block (attn.qkv, mlp)")


def _build_modules(sam: Sam, config: PeftConfig) -> tuple[dict, RelationMatrix | None]:
    """New wrapper modules keyed by (block index, attribute path); nothing is attached yet."""
    blocks = sam.image_encoder.blocks
    per_block = config.modules_per_block
    relation, cobot = None, config.cobot
    if cobot is not None:
        relation = RelationMatrix(
            len(blocks) * per_block, config.rank, cobot.relation, cobot.seed, cobot.base_init
        )
        relation.to(next(sam.image_encoder.parameters()).device).train(sam.training)

    def bridge(index: int, cobot: CobotConfig | None) -> CobotBridge | None:
        if cobot is None:
            return None
        return CobotBridge(config.rank, index, relation, cobot).to(relation.c.device)

    new = {}
    for i, block in enumerate(blocks):
        if config.method == "lora":
            new[(i, "attn.qkv")] = LoRAQKV(
                block.attn.qkv,
                config.rank,
                bridge(2 * i, cobot),
                bridge(2 * i + 1, cobot),
                config.down_init_scale,
            )
        else:
            new[(i, "mlp")] = AdaptformerMLP(
                block.mlp,
                block.norm2.normalized_shape[0],
                config.rank,
                config.adaptformer_scale,
                config.adaptformer_dropout,
                bridge(i, cobot),
                config.down_init_scale,
            )
    for module in new.values():  # the new modules follow the model's train/eval mode
        module.train(sam.training)
    return new, relation


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def apply_peft(
    sam: Sam,
    method: str | PeftConfig,
    rank: int | None = None,
    cobot: bool | dict | CobotConfig | None = None,
    **kwargs: Any,
) -> PeftSummary:
    """Freeze ``sam``, inject the PEFT variant into its image encoder and mark what trains.

    Args:
        sam: a segment_anything Sam (any size; ``cobot_lib.build_sam``).
        method: "lora", "adaptformer", "freeze", "decoder", "full", or a PeftConfig.
        rank: V (default 4 for LoRA, 16 for Adaptformer).
        cobot: None/False, True (paper defaults), a dict of CobotConfig switches or a CobotConfig.
        **kwargs: further PeftConfig fields (train_decoder, adaptformer_scale, ...).
    Returns:
        A PeftSummary with trainable parameters by group.
    """
    config = make_config(method, rank, cobot, **kwargs)
    _check_sam(sam)
    new, relation = _build_modules(sam, config) if config.method in PEFT_METHODS else ({}, None)

    saved_flags = {name: p.requires_grad for name, p in sam.named_parameters()}
    originals = {}
    try:
        for (i, path), module in new.items():
            block = sam.image_encoder.blocks[i]
            originals[(i, path)] = block.get_submodule(path)
            _set_submodule(block, path, module)
        if relation is not None:
            sam.image_encoder.add_module(RELATION_ATTR, relation)
            relation.attach_hooks(sam.image_encoder)
        for p in sam.parameters():
            p.requires_grad_(config.method == "full")
        if config.trains_decoder:
            sam.mask_decoder.requires_grad_(True)
        for module in new.values():
            for name, p in module.named_parameters():
                if not name.startswith(("qkv.", "mlp.")):
                    p.requires_grad_(True)
        if relation is not None:
            relation.requires_grad_(True)
    except BaseException:
        for (i, path), module in originals.items():
            _set_submodule(sam.image_encoder.blocks[i], path, module)
        if relation is not None:
            relation.remove_hooks()
        if hasattr(sam.image_encoder, RELATION_ATTR):
            delattr(sam.image_encoder, RELATION_ATTR)
        for name, p in sam.named_parameters():
            p.requires_grad_(saved_flags[name])
        raise
    setattr(sam, CONFIG_ATTR, config)
    setattr(sam, _SAVED_FLAGS_ATTR, saved_flags)
    return PeftSummary(config, parameter_groups(sam), len(new) * config.modules_per_block)


def summarize(sam: Sam) -> PeftSummary:
    """The PeftSummary of a SAM that already has PEFT applied."""
    config = peft_config_of(sam)
    if config is None:
        raise ValueError("this SAM has no PEFT applied (call apply_peft first)")
    modules = config.modules_per_block * len(sam.image_encoder.blocks)
    return PeftSummary(config, parameter_groups(sam), modules)


def detach_relation(sam: Sam) -> None:
    """Remove the relation matrix and its forward hooks (nothing left reads its coefficients)."""
    if hasattr(sam.image_encoder, RELATION_ATTR):
        getattr(sam.image_encoder, RELATION_ATTR).remove_hooks()
        delattr(sam.image_encoder, RELATION_ATTR)


def forget_peft(sam: Sam, restore_flags: bool) -> None:
    """Drop the PEFT bookkeeping from ``sam`` (config, saved flags, relation matrix); with
    ``restore_flags`` the original requires_grad flags come back first. The one teardown that
    both ``unload`` and ``merge`` end with."""
    if restore_flags:
        flags = getattr(sam, _SAVED_FLAGS_ATTR, {})
        for name, p in sam.named_parameters():
            p.requires_grad_(flags.get(name, True))
    detach_relation(sam)
    for attr in (CONFIG_ATTR, _SAVED_FLAGS_ATTR):
        if hasattr(sam, attr):
            delattr(sam, attr)


def unload(sam: Sam) -> Sam:
    """Remove every injected module and restore requires_grad flags: a plain Sam again."""
    if peft_config_of(sam) is None:
        return sam
    for block in sam.image_encoder.blocks:
        if isinstance(block.attn.qkv, LoRAQKV):
            block.attn.qkv = block.attn.qkv.qkv
        if isinstance(block.mlp, AdaptformerMLP):
            block.mlp = block.mlp.mlp
    forget_peft(sam, restore_flags=True)
    return sam
