"""The harness of notebooks 06 and 07: short runs from one start (RM on / RM off), recorded.

    train_set, eval_set = datasets(params)
    run = train_recorded(params, "learnable", train_set, eval_set)   # RM on
    run.log["S"][-1]      # the relation matrix after the last step

``train_recorded`` trains with ``cobot_lib.engine.Trainer`` and a callback that keeps, after
every Adam step, every module's coefficients, the relation matrix S, the base sets c and the
gradient norm per block; it also keeps the adapter's and the frozen encoder's state before
training. The tables of principal angles notebook 07 draws are built here too, from
``cobot_lib.experiments.analysis``.

``fresh_model`` and ``train_short`` serve notebook 06's comparison of base-coefficient
initialisations (``CobotConfig.base_init``) in the smallest loop that shows it: the same plain
Adam loop (``analysis.loss_gradients``, one image per step) trains both models, so
the two runs differ only in c's initial values.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from segment_anything.modeling import Sam

from ..algebra.quaternion import block_matrix
from ..backbone.foundation import load_foundation_model
from ..backbone.prompting import predict_masks
from ..backbone.sam import build_sam, input_size
from ..data.synthetic import SyntheticShapes
from ..engine.config import config_from_dict
from ..engine.runtime import check_dataset, seed_everything
from ..engine.trainer import Trainer, build_datasets
from ..experiments.analysis import (
    AdapterView,
    adapter_views,
    coefficient_table,
    gradient_norms_by_block,
    loss_gradients,
    principal_angles,
    singular_values,
    subspace_shift,
    top_singular_subspace,
)
from ..peft import apply_peft, peft_config_of, relation_of, unload

__all__ = [
    "RecordedRun",
    "datasets",
    "epochs_for",
    "fold_into_plain",
    "fresh_model",
    "frozen_unchanged",
    "row_spread",
    "lora_direction_table",
    "mask_logits",
    "orthogonality_gap",
    "read_angle_table",
    "run_config",
    "train_recorded",
    "train_short",
]


def run_config(params: dict[str, Any], relation: str, epochs: int) -> dict[str, Any]:
    """The training configuration of one run (``relation``: "learnable" = RM on, "off")."""
    p = params
    return {
        "name": f"{p['method']}_cobot_rm_{relation}",
        "output_dir": f"{p['output_dir']}/{{name}}",
        "model": {
            "type": p["model_type"],
            "checkpoint": None if p["checkpoint"] == "random" else p["checkpoint"],
        },
        "peft": {
            "method": p["method"],
            "rank": p["rank"],
            "cobot": {"enabled": True, "relation": relation, "seed": p["seed"]},
        },
        "data": {
            "root": None if p["dataset"] == "synthetic" else p["dataset"],
            "jitter": p["box_jitter_px"],
        },
        "optim": {"lr": p["lr"], "weight_decay": 0.0, "epochs": epochs},
        "runtime": {
            "seed": p["seed"],
            "device": p["device"],
            "max_steps": p["steps"],
            "resume": "never",
            "progress": False,
        },  # fmt: skip
        "eval": {"enabled": True},
    }


def datasets(params: dict[str, Any]) -> tuple[Any, Any]:
    """(training, evaluation) sets; an empty one stops here with a ConfigError."""
    if params["dataset"] == "synthetic":
        size, seed = input_size(params["model_type"]), params["seed"]
        train_set = SyntheticShapes(48, size, seed=seed + 1, jitter_px=params["box_jitter_px"])
        eval_set = SyntheticShapes(16, size, seed=seed + 2, train=False)
    else:
        train_set, eval_set = build_datasets(config_from_dict(run_config(params, "learnable", 1)))
    check_dataset(train_set, "training")
    check_dataset(eval_set, "evaluation")
    return train_set, eval_set


def epochs_for(params: dict[str, Any], train_set: Any) -> int:
    """Epochs that cover ``steps`` Adam steps at one image per step."""
    return math.ceil(params["steps"] / len(train_set))


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy().copy()


@dataclass
class RecordedRun:
    """One training run and what was recorded along it."""

    sam: Sam
    before: dict[str, Any]  # views, coefficients, S, c, frozen (encoder), adapter (trainables)
    log: dict[str, list] = field(default_factory=dict)  # per step: coefficients, S, c, grad
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    views_after: list[AdapterView] = field(default_factory=list)


def train_recorded(
    params: dict[str, Any], relation: str, train_set: Any, eval_set: Any
) -> RecordedRun:
    """Train one run (RM ``relation``) for ``params["steps"]`` steps, recording every step."""
    cfg = config_from_dict(run_config(params, relation, epochs_for(params, train_set)))
    log: dict[str, list] = {"coefficients": [], "S": [], "c": [], "grad": []}
    holder: dict[str, Trainer] = {}

    def record(rec: dict) -> None:
        if rec.get("event") == "step":
            sam = holder["trainer"].sam
            log["coefficients"].append(coefficient_table(sam))
            log["S"].append(_numpy(relation_of(sam).S))
            log["c"].append(_numpy(relation_of(sam).c))
            log["grad"].append(gradient_norms_by_block(sam))

    trainer = holder["trainer"] = Trainer(cfg, train_set=train_set, eval_set=eval_set,
                                          callbacks=[record])  # fmt: skip
    sam = trainer.sam
    encoder = sam.image_encoder.named_parameters()
    before = {
        "views": adapter_views(sam),
        "coefficients": coefficient_table(sam),
        "S": _numpy(relation_of(sam).S),
        "c": _numpy(relation_of(sam).c),
        "frozen": {n: p.detach().clone() for n, p in encoder if not p.requires_grad},
        "adapter": copy.deepcopy(
            {n: p.detach().clone() for n, p in sam.named_parameters() if p.requires_grad}
        ),
    }
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    sam.eval()
    loss = [r["loss"] for r in history if r["event"] == "step"]
    return RecordedRun(sam, before, log, loss, seconds, adapter_views(sam))


def frozen_unchanged(run: RecordedRun) -> bool:
    """Whether every frozen encoder weight is bitwise what it was before training."""
    now = dict(run.sam.image_encoder.named_parameters())
    return all(torch.equal(value, now[name]) for name, value in run.before["frozen"].items())


def read_angle_table(runs: dict[str, RecordedRun], rank: int) -> pd.DataFrame:
    """Per run and module: the largest and mean principal angle (degrees) between the subspace
    its effective down map reads before and after training (rank V asserted: W diag(λ) is
    invertible, so that subspace is the row space of A)."""
    rows = []
    for label, run in runs.items():
        for v0, v1 in zip(run.before["views"], run.views_after, strict=True):
            assert np.linalg.matrix_rank(v1.down.double().numpy()) == rank, v1.name
            angles = np.degrees(principal_angles(v0.down.T, v1.down.T))
            assert angles.shape == (rank,) and ((angles >= 0) & (angles <= 90 + 1e-9)).all()
            rows.append(
                {"run": label, "module": v0.name, "block": v0.block,
                 "max angle (deg)": angles.max(), "mean angle (deg)": angles.mean()}
            )  # fmt: skip
    return pd.DataFrame(rows)


def lora_direction_table(
    runs: dict[str, RecordedRun], rank: int, top_k: int, seed: int
) -> pd.DataFrame:
    """Per run and LoRA module: how far W0's top-k left singular subspace turned, the smallest
    angle between ΔW's column space and it, the same for a random V-dim subspace, and
    σ1(ΔW) / σ1(W0)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, run in runs.items():
        for v in run.views_after:
            w0, dw = v.frozen.double().numpy(), v.update.double().numpy()
            top = top_singular_subspace(w0, top_k)
            shift = np.degrees(subspace_shift(w0, w0 + dw, top_k))
            to_top = np.degrees(principal_angles(np.linalg.svd(dw)[0][:, :rank], top))
            rand = np.degrees(principal_angles(rng.standard_normal((w0.shape[0], rank)), top))
            assert (shift <= 90 + 1e-9).all() and (to_top <= 90 + 1e-9).all()
            size = singular_values(dw)[0] / singular_values(w0)[0]
            rows.append(
                {"run": label, "module": v.name, "top-k shift (deg)": shift.max(),
                 "ΔW vs top-k: smallest angle": to_top.min(),
                 "random vs top-k: smallest angle": rand.min(), "σ1(ΔW) / σ1(W0)": size}
            )  # fmt: skip
    return pd.DataFrame(rows)


def fresh_model(
    params: dict[str, Any],
    relation: str = "learnable",
    *,
    cobot: bool = True,
    down_init_scale: float = 1.0,
    **switches: Any,
) -> Sam:
    """The run's model (seeded as the engine seeds it) before any training, with COBOT switches
    changed by ``switches`` (e.g. ``base_init="perturbed"``); ``cobot=False``: the plain base
    method; ``down_init_scale``: PeftConfig.down_init_scale."""
    cfg = config_from_dict(run_config(params, relation, 1))
    seed_everything(params["seed"])
    ckpt = params["checkpoint"]
    if ckpt == "foundation":
        sam = load_foundation_model()
    else:
        sam = build_sam(params["model_type"], None if ckpt == "random" else ckpt)
    peft = cfg.peft
    switched = dataclasses.replace(peft.cobot, **switches) if cobot else None
    apply_peft(sam, peft.with_(cobot=switched, down_init_scale=down_init_scale))
    return sam.to(params["device"])


def train_short(sam: Sam, items: list[dict], steps: int, lr: float) -> list[np.ndarray]:
    """Plain Adam (no weight decay), one item per step, cycling through ``items``; returns the
    relation matrix S before training and after every step."""
    rel = relation_of(sam)
    opt = torch.optim.Adam([p for p in sam.parameters() if p.requires_grad], lr=lr)
    sam.train()
    history = [_numpy(rel.S)]
    for step in range(steps):
        loss_gradients(sam, [items[step % len(items)]])
        opt.step()
        history.append(_numpy(rel.S))
    sam.eval()
    return history


def row_spread(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row m of S - I: (max_k - min_k, mean_k). A spread of 0 means the row moved
    uniformly: module m learned one gain, no preference for any block."""
    delta = np.asarray(S, dtype=np.float64) - np.eye(len(S))
    return delta.max(1) - delta.min(1), delta.mean(1)


@torch.no_grad()
def fold_into_plain(sam: Sam, with_head: bool = True) -> Sam:
    """A copy of a COBOT model as the plain base method, each bridge folded into its down map:
    A' = W diag(lambda) A (LoRA: A_q and A_v; Adaptformer: A's weight and bias). The plain
    model computes the same function: COBOT adds no function, only a parametrisation.
    ``with_head=False`` folds diag(lambda) alone (a deliberately wrong fold, to show that the
    comparison can fail)."""
    config = peft_config_of(sam)
    if config is None or config.cobot is None:
        raise ValueError("fold_into_plain needs a model with COBOT applied")
    plain = copy.deepcopy(sam)
    unload(plain)
    apply_peft(plain, config.with_(cobot=None))
    for mine, theirs in zip(sam.image_encoder.blocks, plain.image_encoder.blocks, strict=True):
        if config.method == "lora":
            for which in ("q", "v"):
                bridge = getattr(mine.attn.qkv, f"cobot_{which}")
                down = getattr(mine.attn.qkv, f"lora_a_{which}").weight
                folded = bridge.fold(down) if with_head else bridge.coefficients()[:, None] * down
                getattr(theirs.attn.qkv, f"lora_a_{which}").weight.copy_(folded)
                up = getattr(mine.attn.qkv, f"lora_b_{which}").weight
                getattr(theirs.attn.qkv, f"lora_b_{which}").weight.copy_(up)
        else:
            src, dst = mine.mlp, theirs.mlp
            weight, bias = src.down_weight_and_bias()
            if not with_head:
                lam = src.cobot.coefficients()
                weight, bias = lam[:, None] * src.adapter_down.weight, lam * src.adapter_down.bias
            dst.adapter_down.weight.copy_(weight)
            dst.adapter_down.bias.copy_(bias)
            dst.adapter_norm.load_state_dict(src.adapter_norm.state_dict())
            dst.adapter_up.load_state_dict(src.adapter_up.state_dict())
    return plain.train(sam.training)


def mask_logits(sam: Sam, items: list[dict]) -> torch.Tensor:
    """The mask logits of ``sam`` (eval mode, no gradient) for every box of every item,
    concatenated: one tensor to compare two models on the same prompts."""
    sam.eval()
    with torch.no_grad():
        return torch.cat(
            [
                predict_masks(sam, torch.as_tensor(it["image"])[None],
                              [torch.as_tensor(it["boxes"]).float()])[0]
                for it in items
            ]
        )  # fmt: skip


def orthogonality_gap(weight: torch.Tensor) -> float:
    """max |W^T W - I| of a head: a real (V, V) matrix, or quaternion weights (V/4, V/4, 4)
    read as their block matrix."""
    w = weight.detach().double()
    w = w if w.dim() == 2 else block_matrix(w)
    return float((w.T @ w - torch.eye(w.shape[1], dtype=torch.float64)).abs().max())
