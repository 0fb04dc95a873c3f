"""Parameter-space analysis of adapted SAMs: subspaces, spectra, coefficients and gradients.

The questions of notebook 06, as library functions:

- How far did each PEFT module's projection directions move? ``principal_angles`` between two
  subspaces (Bjorck & Golub 1973, with the sine formula for small angles of Knyazev & Argentati
  2002), applied to the row space of each module's effective down map ``M_m A_m`` before and
  after training, and to the top-k singular subspaces of a frozen weight W0 and W0 + dW (LoRA).
- What does an update look like? ``singular_values`` and ``effective_rank`` (Roy & Vetterli
  2007) of dW = B_m M_m A_m.
- Where do the coefficients go? ``coefficient_table``: lambda_MC + lambda_LM of every module.
- Where does the gradient go? ``gradient_norms_by_block`` and, for the relation matrix
  (Eq. 17, lambda_LM_m = sum_k S[m, k] c_k), ``relation_gradients``: dL/dc = S^T G and
  dL/dS = G c^T with G[m] = dL/dlambda_LM_m, so base coefficients of early blocks receive
  gradient from every later module through S.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from segment_anything.modeling import Sam

from ..backbone.prompting import predict_masks
from ..engine.losses import bce_dice_loss
from ..peft import AdaptformerMLP, LoRAQKV, is_adapter_name, peft_config_of, relation_of

__all__ = [
    "principal_angles",
    "top_singular_subspace",
    "subspace_shift",
    "singular_values",
    "effective_rank",
    "AdapterView",
    "adapter_views",
    "module_blocks",
    "coefficient_table",
    "loss_gradients",
    "gradient_norms_by_block",
    "relation_gradients",
    "cross_block_share",
]

ArrayLike = np.ndarray | torch.Tensor


def _np(x: ArrayLike, name: str = "matrix") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has non-finite entries")
    return x


def _orthonormal_basis(x: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of x (rank by the usual SVD tolerance)."""
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return u[:, :0]
    rank = int((s > max(x.shape) * np.finfo(np.float64).eps * s[0]).sum())
    return u[:, :rank]


def principal_angles(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of a (n, p) and b (n, q).

    There are min(rank a, rank b) of them. Cosines are the singular values of Qa^T Qb; sines
    are the singular values of the part of the smaller basis outside the larger subspace. Each
    angle is read from its sine when it is below 45 degrees (accurate for tiny angles) and from
    its cosine otherwise.
    """
    a, b = _np(a, "a"), _np(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"a and b must live in the same space: {a.shape[0]} vs {b.shape[0]} rows")
    qa, qb = _orthonormal_basis(a), _orthonormal_basis(b)
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa  # qa spans the larger subspace
    k = qb.shape[1]
    if k == 0:
        return np.zeros(0)
    cosines = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)  # descending
    residual = qb - qa @ (qa.T @ qb)
    sines = np.clip(np.linalg.svd(residual, compute_uv=False), 0.0, 1.0)[:k]
    sines = np.sort(sines)  # ascending, paired with descending cosines
    angles = np.where(sines**2 < 0.5, np.arcsin(sines), np.arccos(cosines))
    return np.sort(angles)


def top_singular_subspace(w: ArrayLike, k: int) -> np.ndarray:
    """The k leading left singular vectors of w, (rows, k): the directions w writes most into."""
    w = _np(w, "w")
    if not 1 <= k <= min(w.shape):
        raise ValueError(f"k must be in [1, {min(w.shape)}] for a {w.shape} matrix, got {k}")
    return np.linalg.svd(w, full_matrices=False)[0][:, :k]


def subspace_shift(w_frozen: ArrayLike, w_adapted: ArrayLike, k: int) -> np.ndarray:
    """Principal angles (radians, ascending) between the top-k left singular subspaces of a
    frozen weight and its adapted version (e.g. W0 and W0 + dW)."""
    return principal_angles(top_singular_subspace(w_frozen, k), top_singular_subspace(w_adapted, k))


def singular_values(m: ArrayLike) -> np.ndarray:
    """Singular values of m, descending (computed in float64 with torch)."""
    t = torch.as_tensor(_np(m, "m"))
    return torch.linalg.svdvals(t).numpy()


def effective_rank(s: ArrayLike | np.ndarray) -> float:
    """exp(entropy) of the normalised singular values (Roy & Vetterli 2007): k for k equal
    values, 1 for a single one; 0 for an all-zero spectrum."""
    s = np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s, dtype=np.float64)
    if s.ndim != 1 or (s < 0).any():
        raise ValueError("effective_rank expects a 1-D array of non-negative singular values")
    total = s.sum()
    if total == 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


@dataclass(frozen=True)
class AdapterView:
    """One PEFT module, detached: what it reads (``down``), what it adds (``update``).

    name: "block 3 q" / "block 3 v" (LoRA) or "block 3 mlp" (Adaptformer).
    index: the module's row of S (its order among all M modules).
    down: (V, D) effective down map M A, with M = W diag(lambda_MC + lambda_LM) under COBOT.
    update: (D, D) the linear update B M A (LoRA: dW added to q or v; Adaptformer: s B M A, the
        adapter without its ReLU).
    frozen: (D, D) the frozen weight dW is added to (LoRA), None for Adaptformer.
    """

    name: str
    block: int
    index: int
    down: torch.Tensor
    update: torch.Tensor
    frozen: torch.Tensor | None


@torch.no_grad()
def adapter_views(sam: Sam) -> list[AdapterView]:
    """Every LoRA / Adaptformer module of the image encoder, in module (S row) order."""
    views: list[AdapterView] = []
    for i, block in enumerate(sam.image_encoder.blocks):
        qkv, mlp = block.attn.qkv, block.mlp
        if isinstance(qkv, LoRAQKV):
            d = qkv.dim
            for j, which in enumerate(("q", "v")):
                rows = slice(0, d) if which == "q" else slice(2 * d, 3 * d)
                views.append(AdapterView(
                    f"block {i} {which}", i, 2 * i + j, qkv.down_weight(which).detach().clone(),
                    qkv.delta_weight(which).detach().clone(),
                    qkv.qkv.weight[rows].detach().clone(),
                ))  # fmt: skip
        elif isinstance(mlp, AdaptformerMLP):
            down = mlp.down_weight_and_bias()[0]
            update = mlp.scale * mlp.adapter_up.weight @ down
            views.append(AdapterView(f"block {i} mlp", i, i, down.clone(), update.clone(), None))
    if not views:
        raise ValueError("this SAM has no LoRA or Adaptformer modules (apply_peft first)")
    return views


def module_blocks(sam: Sam) -> list[int]:
    """The block of each PEFT module, in module (S row) order."""
    config = peft_config_of(sam)
    if config is None or config.method not in ("lora", "adaptformer"):
        raise ValueError("module_blocks needs a SAM with LoRA or Adaptformer applied")
    per_block = config.modules_per_block
    return [m // per_block for m in range(per_block * len(sam.image_encoder.blocks))]


@torch.no_grad()
def coefficient_table(sam: Sam) -> np.ndarray:
    """(M, V): the coefficients lambda_MC_m + lambda_LM_m every COBOT bridge multiplies h by."""
    relation = relation_of(sam)
    if relation is None:
        raise ValueError("this SAM has no COBOT bridges (apply_peft(..., cobot=True))")
    return relation.module_coefficients().double().cpu().numpy()


def _block_of(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) > 2 and parts[0] == "image_encoder" and parts[1] == "blocks":
        return int(parts[2])
    return None


def loss_gradients(sam: Sam, items: Sequence[dict]) -> float:
    """Zero every gradient, then backpropagate the mean BCE + Dice loss (Eq. 22) over ``items``
    (dataset items: "image" (3, S, S), "masks" (N, S, S), "boxes" (N, 4)); all instances of an
    image go through the decoder together, as in training. Returns the loss. The model's
    train/eval mode is left as it is (use eval mode for a measurement without dropout).
    """
    if not items:
        raise ValueError("loss_gradients needs at least one item")
    sam.zero_grad(set_to_none=True)
    device = next(sam.parameters()).device
    total = 0.0
    for item in items:
        image = torch.as_tensor(item["image"])[None].to(device)
        boxes = torch.as_tensor(item["boxes"], dtype=torch.float32).to(device)
        masks = torch.as_tensor(item["masks"], dtype=torch.float32).to(device)
        logits = predict_masks(sam, image, [boxes])[0][:, 0]
        loss = bce_dice_loss(logits, masks) / len(items)
        loss.backward()
        total += float(loss.detach())
    return total


def gradient_norms_by_block(sam: Sam) -> dict[str, np.ndarray]:
    """L2 norms of the current gradients, per encoder block, (L,) arrays in three groups.

    "adapter": the LoRA / Adaptformer parameters (A, B, LN, biases) of the block;
    "cobot": the block's bridges (lambda_MC and the head W);
    "base_coefficients": the rows of the relation module's c that belong to the block's modules.
    Parameters without a gradient count as zero.
    """
    blocks = len(sam.image_encoder.blocks)
    sums = {k: np.zeros(blocks) for k in ("adapter", "cobot", "base_coefficients")}
    for name, p in sam.named_parameters():
        if p.grad is None or not p.requires_grad:
            continue
        block = _block_of(name)
        sq = float(p.grad.detach().double().pow(2).sum())
        if block is not None and is_adapter_name(name, cobot=True):
            sums["cobot"][block] += sq
        elif block is not None and is_adapter_name(name):
            sums["adapter"][block] += sq
    relation = relation_of(sam)
    if relation is not None and relation.c.grad is not None:
        rows = relation.c.grad.detach().double().pow(2).sum(1).cpu().numpy()
        np.add.at(sums["base_coefficients"], module_blocks(sam), rows)
    return {k: np.sqrt(v) for k, v in sums.items()}


def relation_gradients(S: ArrayLike, c: ArrayLike, G: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form gradients of the relation module (Eq. 17, lambda_LM = S c).

    G (M, V) holds dL/dlambda_LM_m per module (with dual coefficient sets this equals
    lambda_MC_m's gradient, since the bridge uses their sum). Returns (dL/dc, dL/dS) =
    (S^T G, G c^T).
    """
    S, c, G = _np(S, "S"), _np(c, "c"), _np(G, "G")
    if S.shape[0] != S.shape[1] or c.shape != G.shape or c.shape[0] != S.shape[0]:
        raise ValueError(f"need S (M, M), c and G (M, V); got {S.shape}, {c.shape}, {G.shape}")
    return S.T @ G, G @ c.T


def cross_block_share(S: ArrayLike, G: ArrayLike) -> np.ndarray:
    """For each module k, the share of dL/dc_k = sum_m S[m, k] G[m] that comes from the other
    modules (m != k): ||sum_{m != k} S[m, k] G[m]|| / (||S[k, k] G[k]|| + ||sum_{m != k} ...||).
    0 with S = I (no cross-block path), 1 when only other modules contribute."""
    S, G = _np(S, "S"), _np(G, "G")
    total = S.T @ G
    own = np.diag(S)[:, None] * G
    other = np.linalg.norm(total - own, axis=1)
    denom = np.linalg.norm(own, axis=1) + other
    return np.divide(other, denom, out=np.zeros_like(other), where=denom > 0)
