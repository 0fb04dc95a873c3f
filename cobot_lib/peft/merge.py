"""Fold linear adapters into the frozen weights for inference.

- LoRA (+- COBOT): the update of q and v is B W diag(lambda) A, a D x D matrix; it is added to
  the rows of qkv's weight, the wrapper is replaced by a plain nn.Linear and the relation matrix
  is removed, so the result is a plain segment_anything ``Sam`` with no extra cost.
- Adaptformer + COBOT: the bridge sits between A and the ReLU, so W diag(lambda) folds into A
  (weight and bias); what remains is a plain Adaptformer (its ReLU keeps it out of the MLP).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import Sam
from torch import nn

from .inject import CONFIG_ATTR, detach_relation, forget_peft, peft_config_of
from .layers import AdaptformerMLP, LoRAQKV

__all__ = ["merge"]


@torch.no_grad()
def _merged_qkv(wrapper: LoRAQKV) -> nn.Linear:
    qkv = wrapper.qkv
    merged = nn.Linear(qkv.in_features, qkv.out_features, bias=qkv.bias is not None)
    merged.to(device=qkv.weight.device, dtype=qkv.weight.dtype)
    d = wrapper.dim
    weight = qkv.weight.clone()
    weight[:d] += wrapper.delta_weight("q").to(weight.dtype)
    weight[2 * d :] += wrapper.delta_weight("v").to(weight.dtype)
    merged.weight.copy_(weight)
    if qkv.bias is not None:
        merged.bias.copy_(qkv.bias)
    merged.requires_grad_(False)
    return merged


@torch.no_grad()
def _fold_bridge(adapter: AdaptformerMLP) -> None:
    weight, bias = adapter.down_weight_and_bias()
    adapter.adapter_down.weight.copy_(weight)
    adapter.adapter_down.bias.copy_(bias)
    adapter.cobot = None


def merge(sam: Sam) -> Sam:
    """Merge the adapters of ``sam`` in place for inference and return it.

    LoRA and LoRA+COBOT give a plain ``Sam``; Adaptformer+COBOT gives a plain Adaptformer.
    Methods with nothing to fold (freeze, decoder, full, plain Adaptformer) are returned as is.
    """
    config = peft_config_of(sam)
    if config is None:
        raise ValueError("this SAM has no PEFT applied; nothing to merge")
    if config.method == "lora":
        for block in sam.image_encoder.blocks:
            block.attn.qkv = _merged_qkv(block.attn.qkv)
        forget_peft(sam, restore_flags=False)
    elif config.method == "adaptformer" and config.cobot is not None:
        for block in sam.image_encoder.blocks:
            _fold_bridge(block.mlp)
        setattr(sam, CONFIG_ATTR, config.with_(cobot=None))
        detach_relation(sam)
    return sam
