"""The authors' checkpoints in and out (github.com/SJTU-DeepVisionLab/SAM-COBOT).

    python -m cobot_lib.peft.official import their.pth runs/theirs --model-type vit_b
    python -m cobot_lib.peft.official export runs/ours/adapter ours.pth --model-type vit_b \\
        --sam-checkpoint sam_vit_b_01ec64.pth [--layout remote]

Their code saves the whole SAM: ``medical/train.py`` a plain ``sam.state_dict()``,
``remote/train_SAM_box.py`` ``{"state_dict": SonarSAM.state_dict()}`` with keys under ``sam.``.
Their modules (``remote/model/model_proxy_SAM_box.py``) and this project's (METHOD.md section 7):

- ``_LoRA_qkv`` / ``Adapter``: plain LoRA (``linear_a_q`` ...) and Adaptformer (``down_proj``,
  ``up_proj``, ``adapter_layer_norm_before``); the frozen originals sit at ``qkv.`` / ``mlp.``
  inside the wrapper, as in ``LoRAQKV`` / ``AdaptformerMLP``, so every frozen key is shared.
- ``_LoRA_qkv_relation_add`` (rank 4) / ``Adapter_relation`` (rank 16), module m:
  ``FacT_d((A x) * (FacT_c @ FacT_p)[0, :, m] + gamma * (A x))``. ``FacT_c`` (1, V, M) = c^T and
  ``FacT_p`` (M, M) = S^T, one pair shared by every block (saved once per block); ``gamma`` is
  lambda_MC (LoRA: 8 values, ``[:4]`` for q, ``[-4:]`` for v). ``FacT_d`` is a
  ``QuaternionLinear`` (``r/i/j/k_weight``, each (V/4 in, V/4 out)) whose kernel lays a vector
  out as four contiguous blocks (r parts, then i, j, k) and computes ``x @ kernel``; this
  project keeps each quaternion's four parts together (``x[4a:4a+4]``). Converting therefore
  permutes the hidden dimension of A, B, gamma and c, and ``head.weight[o, a] = (r, i, j, k)[a, o]``
  -- index moves only, so a round trip is exact. (The medical ``LORA_relation`` uses an
  ``nn.Linear`` ``FacT_d``: this project's ``head="linear"``, no permutation.)

Not in a state dict and assumed as in their code: adapter scale 1.0, LayerNorm before the
adapter ("in"), dropout 0.1. Imports are marked ``train_decoder=True`` (their runs train the mask
decoder) and ``head_init="official"`` (their initialisation; it does not change the function).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from ..backbone.sam import MODEL_TYPES, build_sam
from ..files import atomic_write
from .config import CobotConfig, PeftConfig
from .inject import RELATION_ATTR, apply_peft, peft_config_of, unload
from .io import load_adapter, read_adapter_config, save_adapter

__all__ = [
    "LAYOUTS",
    "OfficialVariant",
    "read_official",
    "official_tensors",
    "detect_variant",
    "load_official",
    "official_state_dict",
    "save_official",
    "check_convertible",
    "main",
]

LAYOUTS = ("medical", "remote")  # plain sam.state_dict() / {"state_dict": {"sam." + key: ...}}
_LORA_NAMES = {f"lora_{p}_{w}.weight": f"linear_{p}_{w}.weight" for p in "ab" for w in "qv"}
_ADAPTER_NAMES = {
    "adapter_norm.weight": "adapter_layer_norm_before.weight",
    "adapter_norm.bias": "adapter_layer_norm_before.bias",
    "adapter_down.weight": "down_proj.weight",
    "adapter_down.bias": "down_proj.bias",
    "adapter_up.weight": "up_proj.weight",
    "adapter_up.bias": "up_proj.bias",
}
# our names indexed by the hidden dimension: rows of A (and its bias), columns of B
_HIDDEN_ROWS = {"lora_a_q.weight", "lora_a_v.weight", "adapter_down.weight", "adapter_down.bias"}
_HIDDEN_COLS = {"lora_b_q.weight", "lora_b_v.weight", "adapter_up.weight"}
_COBOT_RANK = {"lora": 4, "adaptformer": 16}  # their gamma: 8 values sliced [:4]/[-4:]; 16
_RELATION = f"image_encoder.{RELATION_ATTR}."


@dataclass(frozen=True)
class OfficialVariant:
    """What an authors' checkpoint holds: method, COBOT or not, FacT_d's kind, rank V."""

    method: str  # "lora" (_LoRA_qkv*) or "adaptformer" (Adapter*)
    cobot: bool
    head: str | None  # "hypercomplex" (QuaternionLinear), "linear" (nn.Linear) or None
    rank: int

    def config(self) -> PeftConfig:
        """This project's PeftConfig of the variant."""
        cobot = CobotConfig(head=self.head, head_init="official") if self.cobot else None
        return PeftConfig(self.method, rank=self.rank, cobot=cobot, train_decoder=True)


def official_tensors(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded authors' file: unwraps ``{"state_dict": ...}`` and strips
    the ``module.`` (DataParallel) and ``sam.`` (SonarSAM) prefixes."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(v, torch.Tensor) for v in obj.values())
    ):
        raise ValueError(f"{source} is not a state dict (a mapping of name -> tensor)")
    for prefix in ("module.", "sam."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return dict(obj)


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an authors' checkpoint safely (``weights_only``) and return its state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"authors' checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"could not read {path} as a weights-only checkpoint: {exc}") from exc
    return official_tensors(obj, str(path))


def _prefix(method: str, block: int) -> str:
    return f"image_encoder.blocks.{block}." + ("attn.qkv." if method == "lora" else "mlp.")


def detect_variant(state: Mapping[str, torch.Tensor]) -> OfficialVariant:
    """Which of the authors' modules ``state`` was saved from (ValueError if none or both)."""
    if any(k.startswith("image_encoder.layers.") for k in state):
        raise ValueError(
            "a MobileSAM (TinyViT) checkpoint (image_encoder.layers.*) cannot be converted: "
            "this project builds ViT SAMs (image_encoder.blocks.*) only"
        )
    lora = any(k.endswith(".attn.qkv.linear_a_q.weight") for k in state)
    adapter = any(k.endswith(".mlp.down_proj.weight") for k in state)
    if lora == adapter:
        found = "both LoRA and Adapter keys" if lora else "no LoRA or Adapter keys"
        raise ValueError(
            f"unknown checkpoint layout: {found} (expected image_encoder.blocks.<i>.attn.qkv."
            "linear_a_q.weight from _LoRA_qkv* or image_encoder.blocks.<i>.mlp.down_proj.weight "
            f"from Adapter*); first keys: {list(state)[:4]}"
        )
    method = "lora" if lora else "adaptformer"
    p = _prefix(method, 0)
    down = _take(state, p + ("linear_a_q.weight" if lora else "down_proj.weight"))
    cobot = p + "FacT_c" in state
    head = None
    if cobot:
        if p + "FacT_d1.r_weight" in state:
            head = "hypercomplex"
        elif p + "FacT_d1.weight" in state:
            head = "linear"
        else:
            raise ValueError(
                f"checkpoint has {p}FacT_c but neither {p}FacT_d1.r_weight (QuaternionLinear) "
                f"nor {p}FacT_d1.weight (nn.Linear)"
            )
    return OfficialVariant(method, cobot, head, int(down.shape[0]))


def _take(state: Mapping[str, torch.Tensor], key: str, shape: tuple | None = None) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"the checkpoint has no key {key!r}")
    if shape is not None and tuple(state[key].shape) != shape:
        raise ValueError(f"{key} has shape {tuple(state[key].shape)}, expected {shape}")
    return state[key]


def _hidden_order(rank: int, head: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ours_from_theirs, theirs_from_ours): index maps of the hidden dimension. With a quaternion
    head, our index 4a + c (quaternion a, part c) is their index c * V/4 + a; else identity."""
    if head != "hypercomplex":
        return torch.arange(rank), torch.arange(rank)
    ours = torch.arange(rank).reshape(4, rank // 4).T.reshape(-1)
    return ours, torch.argsort(ours)


def _head_to_ours(state: Mapping, key: str, rank: int, head: str) -> torch.Tensor:
    if head == "linear":
        return _take(state, f"{key}.weight", (rank, rank))
    parts = [_take(state, f"{key}.{c}_weight", (rank // 4, rank // 4)) for c in "rijk"]
    return torch.stack(parts, dim=-1).transpose(0, 1)  # (out/4, in/4, 4)


def _head_to_theirs(weight: torch.Tensor, key: str, head: str) -> dict[str, torch.Tensor]:
    if head == "linear":
        return {f"{key}.weight": weight}
    return {f"{key}.{c}_weight": weight[..., n].T for n, c in enumerate("rijk")}


def _shared(state: Mapping, method: str, depth: int, name: str, shape: tuple) -> torch.Tensor:
    """FacT_c / FacT_p: one parameter saved once per block; every copy must agree."""
    first = _take(state, _prefix(method, 0) + name, shape)
    for block in range(1, depth):
        key = _prefix(method, block) + name
        if not torch.equal(_take(state, key, shape), first):
            raise ValueError(f"{key} differs from block 0's: not one shared {name}")
    return first


def _to_ours(state: Mapping, v: OfficialVariant, depth: int) -> dict[str, torch.Tensor]:
    """The authors' state dict renamed and re-indexed into this project's keys."""
    ours_idx, _ = _hidden_order(v.rank, v.head)
    names = _LORA_NAMES if v.method == "lora" else _ADAPTER_NAMES
    out, used = {}, set()
    for block in range(depth):
        p = _prefix(v.method, block)
        for mine, theirs in names.items():
            out[p + mine] = _take(state, p + theirs)
            used.add(p + theirs)
        if not v.cobot:
            continue
        lora = v.method == "lora"
        gamma = _take(state, p + "gamma", ((2 if lora else 1) * v.rank,))
        bridges = ("cobot_q", "cobot_v") if lora else ("cobot",)
        slices = (gamma[: v.rank], gamma[-v.rank :]) if lora else (gamma,)
        for n, (bridge, lam) in enumerate(zip(bridges, slices, strict=True), start=1):
            out[f"{p}{bridge}.lambda_mc"] = lam[ours_idx]
            out[f"{p}{bridge}.head.weight"] = _head_to_ours(state, f"{p}FacT_d{n}", v.rank, v.head)
            used |= {k for k in state if k.startswith(f"{p}FacT_d{n}.")}
        used |= {p + "gamma", p + "FacT_c", p + "FacT_p"}
        for mine in names:
            if mine in _HIDDEN_ROWS:
                out[p + mine] = out[p + mine][ours_idx]
            elif mine in _HIDDEN_COLS:
                out[p + mine] = out[p + mine][:, ours_idx]
    if v.cobot:
        modules = depth * (2 if v.method == "lora" else 1)
        c = _shared(state, v.method, depth, "FacT_c", (1, v.rank, modules))
        s = _shared(state, v.method, depth, "FacT_p", (modules, modules))
        out[_RELATION + "c"] = c[0].T[:, ours_idx]
        out[_RELATION + "S"] = s.T
    out.update({k: t for k, t in state.items() if k not in used and k not in out})
    return {k: t.contiguous() for k, t in out.items()}


def load_official(sam: Sam, state: Mapping[str, torch.Tensor]) -> Sam:
    """Apply the variant of an authors' state dict to a plain ``sam`` and load every tensor of it
    (frozen weights included, so ``sam`` becomes the authors' model). Raises ValueError naming
    the key when the layout is unknown, a key is missing or a shape does not fit ``sam``; the
    model is left as it was then."""
    variant = detect_variant(state)
    if variant.cobot and variant.rank != _COBOT_RANK[variant.method]:
        raise ValueError(
            f"their {variant.method} + COBOT modules work at rank {_COBOT_RANK[variant.method]} "
            f"only (gamma's size is fixed in their code), the checkpoint has rank {variant.rank}"
        )
    depth = len(sam.image_encoder.blocks)
    blocks = {int(k.split(".")[2]) for k in state if k.startswith("image_encoder.blocks.")}
    if blocks != set(range(depth)):
        raise ValueError(f"the checkpoint has {len(blocks)} encoder blocks, this SAM has {depth}")
    ours = _to_ours(state, variant, depth)
    apply_peft(sam, variant.config())
    try:
        expected = sam.state_dict()
        missing = sorted(set(expected) - set(ours))
        unexpected = sorted(set(ours) - set(expected))
        wrong = [
            f"{k} {tuple(ours[k].shape)} (expected {tuple(t.shape)})"
            for k, t in expected.items()
            if k in ours and ours[k].shape != t.shape
        ]
        if missing or unexpected or wrong:
            raise ValueError(
                f"the checkpoint ({variant}) does not fit this SAM: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]}"
            )
        sam.load_state_dict(ours)
    except BaseException:
        unload(sam)
        raise
    return sam


def check_convertible(config: PeftConfig | None) -> None:
    """Raise ValueError when the authors' code has no module for ``config``."""
    if config is None or config.method not in _COBOT_RANK:
        method = None if config is None else config.method
        raise ValueError(
            f"method {method!r} cannot be converted: the authors' code has LoRA and Adapter "
            "(with or without COBOT) only"
        )
    if config.method == "adaptformer" and config.adaptformer_scale != 1.0:
        raise ValueError(f"their Adapter uses scale 1.0, got {config.adaptformer_scale}")
    c = config.cobot
    if c is None:
        return
    fixed = {"coefficient_sets": "dual", "relation": "learnable"}
    for name, value in fixed.items():
        if getattr(c, name) != value:
            raise ValueError(f"cannot be converted: their COBOT has {name}={value!r} only")
    if c.head == "none":
        raise ValueError("cannot be converted: their COBOT always has a FacT_d head")
    if config.rank != _COBOT_RANK[config.method]:
        raise ValueError(
            f"cannot be converted: their {config.method} + COBOT has rank "
            f"{_COBOT_RANK[config.method]} (gamma's size is fixed), got {config.rank}"
        )


def official_state_dict(sam: Sam) -> dict[str, torch.Tensor]:
    """The whole model in the authors' layout (plain keys, as their ``medical/train.py`` saves)."""
    config = peft_config_of(sam)
    check_convertible(config)
    state = {k: t.detach().clone() for k, t in sam.state_dict().items()}
    method, depth, rank = config.method, len(sam.image_encoder.blocks), config.rank
    head = config.cobot.head if config.cobot else None
    _, theirs_idx = _hidden_order(rank, head)
    names = _LORA_NAMES if method == "lora" else _ADAPTER_NAMES
    out = {}
    if config.cobot:
        fact_c = state.pop(_RELATION + "c")[:, theirs_idx].T.unsqueeze(0).contiguous()
        fact_p = state.pop(_RELATION + "S").T.contiguous()
    for block in range(depth):
        p = _prefix(method, block)
        for mine, theirs in names.items():
            t = state.pop(p + mine)
            if mine in _HIDDEN_ROWS:
                t = t[theirs_idx]
            elif mine in _HIDDEN_COLS:
                t = t[:, theirs_idx]
            out[p + theirs] = t.contiguous()
        if not config.cobot:
            continue
        bridges = ("cobot_q", "cobot_v") if method == "lora" else ("cobot",)
        gammas = []
        for n, bridge in enumerate(bridges, start=1):
            gammas.append(state.pop(f"{p}{bridge}.lambda_mc")[theirs_idx])
            weight = state.pop(f"{p}{bridge}.head.weight")
            for k, t in _head_to_theirs(weight, f"{p}FacT_d{n}", head).items():
                out[k] = t.contiguous()
        out[p + "gamma"] = torch.cat(gammas)
        out[p + "FacT_c"], out[p + "FacT_p"] = fact_c, fact_p  # one tensor, saved once
    out.update(state)
    return out


def save_official(sam: Sam, path: str | Path, layout: str = "medical") -> Path:
    """Write ``sam`` (PEFT applied, not merged) as the authors' code saves it."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    state = official_state_dict(sam)
    if layout == "remote":
        state = {"state_dict": {f"sam.{k}": t for k, t in state.items()}}
    return atomic_write(path, lambda p: torch.save(state, p))


def _import(args: argparse.Namespace) -> str:
    if (args.out / "adapter_config.json").exists() and not args.overwrite:
        raise ValueError(f"{args.out} already holds an adapter; pass --overwrite to replace it")
    state = read_official(args.checkpoint)
    sam = build_sam(args.model_type, args.sam_checkpoint)
    # loading copies into the same tensors (injection keeps the original modules), so a
    # snapshot by tensor tells which frozen weights the checkpoint changed
    frozen = [(t, t.clone()) for k, t in sam.state_dict(keep_vars=True).items()
              if not k.startswith("mask_decoder.")]  # fmt: skip
    load_official(sam, state)
    save_adapter(sam, args.out)
    config = peft_config_of(sam)
    note = "frozen weights not compared (no --sam-checkpoint)"
    if args.sam_checkpoint:
        differ = sum(not torch.equal(t.detach(), old) for t, old in frozen)
        note = f"{differ} of {len(frozen)} frozen tensors differ from {args.sam_checkpoint}"
    return f"{args.checkpoint} ({config}) -> adapter {args.out}; {note}"


def _export(args: argparse.Namespace) -> str:
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    check_convertible(read_adapter_config(args.adapter)[0])
    if not args.sam_checkpoint.is_file():
        raise FileNotFoundError(f"--sam-checkpoint {args.sam_checkpoint} does not exist")
    sam = load_adapter(build_sam(args.model_type, args.sam_checkpoint), args.adapter)
    save_official(sam, args.out, args.layout)
    return f"adapter {args.adapter} -> {args.out} (the authors' {args.layout} layout)"


def main(argv: list[str] | None = None) -> int:
    """CLI: convert the authors' SAM-COBOT checkpoints to this project's adapters and back."""
    parser = argparse.ArgumentParser(
        prog="python -m cobot_lib.peft.official", description=main.__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="authors' .pth -> adapter directory")
    imp.add_argument("checkpoint", type=Path)
    imp.add_argument("out", type=Path)
    imp.add_argument("--sam-checkpoint", type=Path, help="compare the frozen weights with it")
    exp = sub.add_parser("export", help="adapter directory -> authors' .pth")
    exp.add_argument("adapter", type=Path)
    exp.add_argument("out", type=Path)
    exp.add_argument("--sam-checkpoint", type=Path, required=True, help="the frozen SAM weights")
    exp.add_argument("--layout", choices=LAYOUTS, default="medical")
    for p in (imp, exp):
        p.add_argument("--model-type", required=True, choices=MODEL_TYPES)
        p.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        print(_import(args) if args.command == "import" else _export(args))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
