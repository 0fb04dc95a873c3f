"""The COBOT modules: inter-block communication (IBC) and intra-block enhancement (IBE).

Inside PEFT module m, between its down map A_m and up map B_m, with h = A_m x in R^V:

    h' = W_m ( (lambda_MC_m + lambda_LM_m) * h )

This is Eq. 21, F(M; W Lambda_MC) + F(M; W Lambda_LM), folded into one branch. For LoRA the
branch is linear, so the fold is exact. For Adaptformer the paper's two branches would each pass
a ReLU before being summed, which is a different function; this project (like METHOD.md) puts
the folded bridge after A and before the single ReLU -- a project choice, not Eq. 21 as printed.

- ``RelationMatrix`` holds, for all M modules of the encoder, the base coefficients c_k (the
  diagonal slices of T in R^{V x V x M}, Eq. 4-5) and the M x M relation matrix S; the cross-block
  coefficient set of module m is the m-th diagonal slice of T_w = T x_3 S (Eqs. 15-17), computed
  with ``tproduct.mode3_product`` so that the model runs the function the notebooks teach.
- ``CobotBridge`` is the per-module part: its own coefficient set lambda_MC_m and the head W_m
  (the quaternion layer of ``quaternion.QuaternionLinear``, a dense layer, or the identity).

Speed: a bridge is linear, so each PEFT module folds its V x V matrix W_m diag(lambda_m) into its
down map A_m (a V x D product) instead of running extra ops on every token. And since all M
matrices depend on the shared S, ``RelationMatrix`` builds them for every module in one batched
step at the start of each image-encoder pass (``attach_hooks`` installs them) and the modules read
their slice; outside a pass (analysis, merging) the same function is called on demand. Tested
against the bridge written out with the Hamilton product (tests/test_cobot_fast_path.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..algebra.quaternion import QuaternionLinear, block_matrix
from ..algebra.tproduct import mode3_product
from .config import BASE_PERTURBATION, CobotConfig

__all__ = ["RelationMatrix", "CobotBridge", "base_coefficients"]


def _fixed_relation(num_modules: int, seed: int) -> torch.Tensor:
    """A random row-stochastic S (rows ~ Dirichlet(1)): it mixes across blocks at random but,
    like the identity, keeps lambda_LM = 1 while all c = 1, so only the mixing differs. The
    paper's Table 2 says only "random values"; row-stochastic is this project's choice."""
    gen = torch.Generator().manual_seed(seed)
    s = -torch.log(torch.rand(num_modules, num_modules, generator=gen).clamp_min(1e-12))
    return s / s.sum(dim=1, keepdim=True)


def base_coefficients(
    num_modules: int, rank: int, init: str = "ones", seed: int = 0
) -> torch.Tensor:
    """The initial base coefficients c, (M, V): "ones" (the paper's) or "perturbed" =
    1 + BASE_PERTURBATION * N(0, 1) from a generator seeded by ``seed`` (CobotConfig.base_init
    says why). A private generator: the global random stream is not touched."""
    if init == "ones":
        return torch.ones(num_modules, rank)
    if init == "perturbed":
        gen = torch.Generator().manual_seed(seed * 1009 + 7919)
        return 1.0 + BASE_PERTURBATION * torch.randn(num_modules, rank, generator=gen)
    raise ValueError(f"base_init must be 'ones' or 'perturbed', got {init!r}")


class RelationMatrix(nn.Module):
    """Base coefficients c (M x V, init ones unless ``base_init``) and the relation matrix S.

    S is M x M over all PEFT modules of the encoder (24 x 24 for LoRA on ViT-B, 12 x 12 for
    Adaptformer). The paper writes S in R^{L x L} (Sec. 4.2), one slice per block; for LoRA,
    with two modules per block, only M x M gives Table 4's +0.9K (METHOD.md section 2).
    """

    def __init__(
        self,
        num_modules: int,
        rank: int,
        relation: str = "learnable",
        seed: int = 0,
        base_init: str = "ones",
    ):
        super().__init__()
        self.num_modules, self.rank, self.relation = num_modules, rank, relation
        self.c = nn.Parameter(base_coefficients(num_modules, rank, base_init, seed))
        if relation == "learnable":
            self.S = nn.Parameter(torch.eye(num_modules))
        elif relation == "fixed":
            self.register_buffer("S", _fixed_relation(num_modules, seed))
        elif relation == "off":
            self.register_buffer("S", torch.eye(num_modules))
        else:
            raise ValueError(f"relation must be learnable, fixed or off, got {relation!r}")
        # Plain attributes, not submodules or state: the bridges register here (in index order)
        # so that one batched call can build all their matrices; _pass holds them during a pass.
        self._bridges: list[CobotBridge] = []
        self._pass: tuple[torch.Tensor, ...] | None = None
        self._hooks: list = []

    def tensor(self) -> torch.Tensor:
        """T = [diag(c_1), ..., diag(c_M)] in R^{V x V x M} (Eq. 5)."""
        return torch.diag_embed(self.c).permute(1, 2, 0)

    def mixed_tensor(self) -> torch.Tensor:
        """T_w = T x_3 S (Eq. 15): slice m is sum_k S[m, k] diag(c_k)."""
        return mode3_product(self.tensor(), self.S)

    def cross_block_coefficients(self) -> torch.Tensor:
        """lambda_LM for every module, (M, V): the diagonals of T_w's frontal slices (Eq. 17)."""
        return torch.diagonal(self.mixed_tensor(), dim1=0, dim2=1)

    # -- one batched computation per encoder pass -------------------------------------------

    def _registered_bridges(self) -> list[CobotBridge]:
        bridges = self._bridges
        if [b.index for b in bridges] != list(range(self.num_modules)):
            raise RuntimeError(
                f"RelationMatrix has bridges {[b.index for b in bridges]}, expected one per "
                f"module 0..{self.num_modules - 1}"
            )
        return bridges

    def module_coefficients(self) -> torch.Tensor:
        """lambda_MC_m + lambda_LM_m of every module, (M, V) (lambda_LM alone with one set)."""
        bridges = self._registered_bridges()
        lam = self.cross_block_coefficients()
        if bridges[0].lambda_mc is None:
            return lam
        return lam + torch.stack([b.lambda_mc for b in bridges])

    def bridge_matrices(self) -> torch.Tensor:
        """W_m diag(lambda_MC_m + lambda_LM_m) of every registered bridge, (M, V, V) (Eq. 21)."""
        lam = self.module_coefficients()
        return _stacked_heads(self._registered_bridges(), lam) * lam.unsqueeze(1)

    def pass_matrices(self) -> tuple[torch.Tensor, ...] | None:
        """The M bridge matrices (V, V) of the current encoder pass (None outside one)."""
        return self._pass

    def pass_matrix(self, index: int) -> torch.Tensor | None:
        """Module ``index``'s bridge matrix from the current encoder pass (None outside one)."""
        return None if self._pass is None else self._pass[index]

    @contextmanager
    def reusing(self, matrices: tuple[torch.Tensor, ...] | None) -> Iterator[None]:
        """Serve ``matrices`` as the pass's bridge matrices (activation checkpointing recomputes a
        block in backward, after the pass ended, and must see exactly the tensors of its pass)."""
        previous, self._pass = self._pass, matrices
        try:
            yield
        finally:
            self._pass = previous

    def attach_hooks(self, encoder: nn.Module) -> None:
        """Compute the bridge matrices when ``encoder`` starts a forward pass, drop them after."""
        self._hooks = [
            encoder.register_forward_pre_hook(self._begin_pass),
            encoder.register_forward_hook(self._end_pass, always_call=True),
        ]

    def remove_hooks(self) -> None:
        """Remove the hooks of ``attach_hooks`` (unload and merge call it)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks, self._pass = [], None

    def _begin_pass(self, module: nn.Module, args: tuple) -> None:
        # unbind once: in backward the M slices' gradients are stacked in a single op
        self._pass = self.bridge_matrices().unbind(0)

    def _end_pass(self, module: nn.Module, args: tuple, output: object) -> None:
        self._pass = None

    def extra_repr(self) -> str:
        return f"num_modules={self.num_modules}, rank={self.rank}, relation={self.relation}"


def _stacked_heads(bridges: list[CobotBridge], like: torch.Tensor) -> torch.Tensor:
    """The heads W_m of all bridges as one (M, V, V) tensor (they share one kind of head)."""
    heads = [b.head for b in bridges]
    if isinstance(heads[0], QuaternionLinear):
        return block_matrix(torch.stack([h.weight for h in heads]))
    if isinstance(heads[0], nn.Linear):
        return torch.stack([h.weight for h in heads])
    rank = like.shape[-1]
    return torch.eye(rank, device=like.device, dtype=like.dtype).expand(len(bridges), rank, rank)


class CobotBridge(nn.Module):
    """h -> W ((lambda_MC + lambda_LM) * h) for one PEFT module (index ``index`` of M)."""

    def __init__(self, rank: int, index: int, relation: RelationMatrix, config: CobotConfig):
        super().__init__()
        self.rank, self.index = rank, index
        # The relation matrix is shared by all bridges and registered once, on the image
        # encoder; a tuple keeps it out of this module's parameters and state dict.
        self._relation = (relation,)
        self.lambda_mc = (
            nn.Parameter(torch.ones(rank)) if config.coefficient_sets == "dual" else None
        )
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(config.seed * 1009 + index)
        if config.head == "hypercomplex":
            self.head: nn.Module | None = QuaternionLinear(rank, init=config.head_init)
        elif config.head == "linear":
            # like_hypercomplex: the quaternion head's draw, made first (same random stream)
            start = None
            if config.linear_init == "like_hypercomplex":
                start = QuaternionLinear(rank, init=config.head_init).matrix().detach()
            self.head = nn.Linear(rank, rank, bias=False)
            with torch.no_grad():
                if start is None:
                    nn.init.orthogonal_(self.head.weight)
                else:
                    self.head.weight.copy_(start)
        else:
            self.head = None
        torch.random.set_rng_state(gen_state)
        relation._bridges.append(self)

    @property
    def relation(self) -> RelationMatrix:
        return self._relation[0]

    def coefficients(self) -> torch.Tensor:
        """lambda_MC + lambda_LM (or lambda_LM alone with a single coefficient set), shape (V,)."""
        return self.relation.module_coefficients()[self.index]

    def matrix(self) -> torch.Tensor:
        """The whole bridge as one V x V matrix, W diag(lambda): folded into A in the forward pass
        and used to merge adapters. Inside an encoder pass it is the pass's precomputed slice;
        outside one (analysis, merging) it is computed by the same batched function."""
        cached = self.relation.pass_matrix(self.index)
        return cached if cached is not None else self.relation.bridge_matrices()[self.index]

    def fold(self, down: torch.Tensor) -> torch.Tensor:
        """W diag(lambda) @ down: the bridge applied to a down map's weight (V, D) or bias (V,)."""
        return self.matrix().to(down.dtype) @ down

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h -> W ((lambda_MC + lambda_LM) * h) on hidden vectors (..., V) (Eq. 21)."""
        return h @ self.matrix().T.to(h.dtype)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, index={self.index}"
