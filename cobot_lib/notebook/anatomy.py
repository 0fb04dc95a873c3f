"""The harness of notebook 03: one block's PEFT module run stage by stage (folded Eq. 21).

``trace_stages("lora")`` builds a tiny SAM with LoRA + COBOT, gives block 0's up map a random
value (at initialisation B = 0 would hide the update), runs the block once to capture the tensor
that reaches the module, then applies the stages the diagram names one by one (A, the
coefficients λ_MC + λ_LM, the quaternion head W, B) and records each stage's input and output
shape. The model computes the same function in fewer operations (``CobotBridge.fold``), so the
trace also returns how far the composed stages are from the module's own output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..backbone.sam import SAM_SPECS, build_sam
from ..peft import PEFT_METHODS, apply_peft

__all__ = ["trace_stages"]

Stage = tuple[str, tuple[int, ...], tuple[int, ...]]


@torch.no_grad()
def trace_stages(method: str, seed: int = 0) -> tuple[list[Stage], float]:
    """(stages in data-flow order, max |composed stages - module output|) for block 0."""
    if method not in PEFT_METHODS:
        raise ValueError(f"method must be one of {list(PEFT_METHODS)}, got {method!r}")
    torch.manual_seed(seed)
    sam = build_sam("tiny").eval()
    apply_peft(sam, method, cobot=True)
    block = sam.image_encoder.blocks[0]
    wrapper = block.attn.qkv if method == "lora" else block.mlp
    up = wrapper.lora_b_q if method == "lora" else wrapper.adapter_up
    torch.nn.init.normal_(up.weight, std=0.02)
    seen: dict[str, torch.Tensor] = {}
    handle = wrapper.register_forward_hook(lambda m, args, out: seen.update(x=args[0], out=out))
    block(torch.randn(1, 16, 16, SAM_SPECS["tiny"].embed_dim))
    handle.remove()
    x, out = seen["x"], seen["out"]
    stages: list[Stage] = []

    def stage(name: str, fn: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor):
        y = fn(h)
        stages.append((name, tuple(h.shape), tuple(y.shape)))
        return y

    if method == "lora":
        bridge, d = wrapper.cobot_q, wrapper.dim
        h = stage("A_q", wrapper.lora_a_q, x)
        h = stage("λ_MC + λ_LM (IBC)", lambda t: t * bridge.coefficients(), h)
        h = stage("W_q (quaternion, IBE)", bridge.head, h)
        update = stage("B_q", wrapper.lora_b_q, h)
        stages.append(("qkv (wrapped)", tuple(x.shape), tuple(out.shape)))
        error = (out[..., :d] - (wrapper.qkv(x)[..., :d] + update)).abs().max()
    else:
        bridge = wrapper.cobot
        h = stage("LN", wrapper.adapter_norm, x)
        h = stage("A", wrapper.adapter_down, h)
        h = stage("λ_MC + λ_LM (IBC)", lambda t: t * bridge.coefficients(), h)
        h = stage("W (quaternion, IBE)", bridge.head, h)
        update = stage("B", wrapper.adapter_up, torch.relu(h))
        stages.append(("MLP + adapter", tuple(x.shape), tuple(out.shape)))
        error = (out - (wrapper.mlp(x) + wrapper.scale * update)).abs().max()
    return stages, float(error)
