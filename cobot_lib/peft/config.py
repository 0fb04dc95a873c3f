"""PEFT configuration as data: one frozen dataclass per variant (each ablation row is one value).

Defaults follow METHOD.md sections 1-2: LoRA rank 4 on q and v, Adaptformer hidden size 16,
and COBOT with both coefficient sets, a learnable relation matrix and the quaternion head.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = [
    "BASE_PERTURBATION",
    "METHODS",
    "PEFT_METHODS",
    "DEFAULT_RANK",
    "COBOT_CHOICES",
    "CobotConfig",
    "PeftConfig",
    "make_config",
    "differing_keys",
]

METHODS = ("lora", "adaptformer", "freeze", "decoder", "full")
PEFT_METHODS = ("lora", "adaptformer")  # the ones that inject modules COBOT can sit in
DEFAULT_RANK = {"lora": 4, "adaptformer": 16}

#: The allowed values of each CobotConfig switch (the first is the default).
COBOT_CHOICES = {
    "coefficient_sets": ("dual", "single"),
    "relation": ("learnable", "fixed", "off"),
    "head": ("hypercomplex", "linear", "none"),
    "head_init": ("paper", "official", "orthogonal"),
    "linear_init": ("orthogonal", "like_hypercomplex"),
    "base_init": ("ones", "perturbed"),
}
#: Standard deviation of base_init="perturbed": c = 1 + BASE_PERTURBATION * N(0, 1).
BASE_PERTURBATION = 0.1


@dataclass(frozen=True)
class CobotConfig:
    """The switches of Tables 1-3 (METHOD.md section 4).

    coefficient_sets: "dual" = lambda_MC + lambda_LM (CoS on); "single" = lambda_LM only.
    relation: "learnable" S (RM on); "fixed" = a random row-stochastic S, not trained (Table 2);
        "off" = S fixed to the identity (no cross-block mixing).
    head: "hypercomplex" = quaternion layer W (HL, V^2/4 parameters); "linear" = a dense V x V
        layer (Table 3); "none" = W is the identity.
    head_init: the quaternion head's initial weights (``algebra.quaternion.QuaternionLinear``):
        "paper" = each quaternion weight uniform on the unit sphere, scaled by 1/sqrt(V/4) --
        this project's reading of the paper's "initialized as orthogonal weights" (Sec. 4.3);
        the matrix is orthogonal block by block, and as a whole only for V = 4;
        "orthogonal" = an exactly orthogonal quaternion matrix (W^T W = I at every V: the
        exponential of a random quaternion skew-Hermitian matrix), the control for Table 3
        (the dense head starts exactly orthogonal); "official" = real part 0, i,j,k ~ U(0,1)
        (the authors' released code).
    linear_init: the dense head's (head="linear") initial matrix: "orthogonal" (torch's
        orthogonal_) or "like_hypercomplex" = exactly the matrix the quaternion head would start
        from with the same head_init and seed, then trained as a free V x V matrix -- so a
        Table 3 comparison differs only in the parametrisation, not in the starting point.
    base_init: the base coefficients c_k (one per module, Eq. 5): "ones" = the paper's and the
        official code's c_k = 1. Then dL/dS[m, k] = <dL/dlambda_LM_m, c_k> is the same for every
        k, so each row of S moves uniformly: S learns one gain per module, not block-to-block
        mixing, until the c_k drift apart. "perturbed" breaks that symmetry: c = 1 +
        BASE_PERTURBATION * N(0, 1), drawn per entry from ``seed``. Per entry rather than one
        value per block: per-block constants c_k = a_k 1 would make dS = G c^T still rank one
        (row m proportional to (a_1, ..., a_M)); independent entries make the c_k distinct
        directions of R^V, so dS can have rank min(V, M). Small (0.1) so lambda_LM starts
        within ~10% of the paper's 1 and the comparison changes only the symmetry.
    seed: draws the fixed random relation matrix, the head's initial weights and the
        perturbed base coefficients.
    """

    coefficient_sets: str = "dual"
    relation: str = "learnable"
    head: str = "hypercomplex"
    head_init: str = "paper"
    seed: int = 0
    linear_init: str = "orthogonal"
    base_init: str = "ones"

    def __post_init__(self) -> None:
        for name, allowed in COBOT_CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"CobotConfig.{name}={value!r}; expected one of {list(allowed)}")
        if not isinstance(self.seed, int):
            raise ValueError(f"CobotConfig.seed must be an int, got {self.seed!r}")
        if self.linear_init != "orthogonal" and self.head != "linear":
            raise ValueError(
                f"CobotConfig.linear_init={self.linear_init!r} initialises the dense head, but "
                f"head={self.head!r}; use head='linear' or leave linear_init='orthogonal'"
            )


@dataclass(frozen=True)
class PeftConfig:
    """A fine-tuning method on SAM's image encoder.

    method: "lora", "adaptformer", "freeze" (nothing trains), "decoder" (the paper's
        "Lightweight": only the mask decoder trains) or "full".
    rank: V, the hidden size of each PEFT module (LoRA rank / Adaptformer bottleneck).
    cobot: None for the plain method, else the COBOT switches.
    train_decoder: for lora/adaptformer, whether SAM's mask decoder trains too (the paper trains
        it and leaves it out of its parameter counts).
    adaptformer_scale / adaptformer_dropout: s and the dropout of METHOD.md section 1.
    down_init_scale: the down map A is multiplied by this after its kaiming-uniform draw (1.0:
        the paper's baselines). 2.0 is the control for CoS: with dual coefficient sets COBOT
        starts at lambda = lambda_MC + lambda_LM = 2, i.e. it scales A by 2 at initialisation,
        so "base method, A x 2" separates that scale from what CoS learns.
    """

    method: str
    rank: int | None = None
    cobot: CobotConfig | None = None
    train_decoder: bool = True
    adaptformer_scale: float = 1.0
    adaptformer_dropout: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)
    down_init_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"unknown PEFT method {self.method!r}; expected one of {list(METHODS)}"
            )
        if self.method in PEFT_METHODS:
            if self.rank is None:
                object.__setattr__(self, "rank", DEFAULT_RANK[self.method])
            if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank <= 0:
                raise ValueError(f"rank must be a positive integer, got {self.rank!r}")
        else:
            if self.rank is not None:
                raise ValueError(f"method {self.method!r} has no rank; got rank={self.rank!r}")
            if self.cobot is not None:
                raise ValueError(
                    f"COBOT sits inside LoRA or Adaptformer modules; method {self.method!r} has "
                    f"none (use one of {list(PEFT_METHODS)})"
                )
        if isinstance(self.cobot, dict):
            object.__setattr__(self, "cobot", CobotConfig(**self.cobot))
        if self.cobot is not None and self.cobot.head == "hypercomplex" and self.rank % 4:
            raise ValueError(
                f"the quaternion head needs V divisible by 4, got rank={self.rank}; "
                "use a multiple of 4 or head='linear'/'none'"
            )
        scale = self.down_init_scale
        if (
            isinstance(scale, bool)
            or not isinstance(scale, int | float)
            or not (math.isfinite(scale) and scale > 0)
        ):
            raise ValueError(f"down_init_scale must be a finite number > 0, got {scale!r}")
        if scale != 1.0 and self.method not in PEFT_METHODS:
            raise ValueError(
                f"down_init_scale scales a PEFT module's down map; method {self.method!r} has "
                f"none (use one of {list(PEFT_METHODS)})"
            )
        if not 0.0 <= self.adaptformer_dropout < 1.0:
            raise ValueError(
                f"adaptformer_dropout must be in [0, 1), got {self.adaptformer_dropout}"
            )

    @property
    def modules_per_block(self) -> int:
        """PEFT modules in each encoder block: LoRA 2 (q and v), Adaptformer 1, the rest 0."""
        return {"lora": 2, "adaptformer": 1}.get(self.method, 0)

    @property
    def trains_decoder(self) -> bool:
        return self.method in ("decoder", "full") or (
            self.method in PEFT_METHODS and self.train_decoder
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PeftConfig:
        data = dict(data)
        cobot = data.pop("cobot", None)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown PeftConfig keys {sorted(unknown)}")
        return cls(cobot=CobotConfig(**cobot) if cobot else None, **data)

    def with_(self, **changes: Any) -> PeftConfig:
        return replace(self, **changes)


def make_config(
    method: str | PeftConfig,
    rank: int | None = None,
    cobot: bool | dict | CobotConfig | None = None,
    **kwargs: Any,
) -> PeftConfig:
    """Normalise the ways a user may name a variant into one PeftConfig.

    ``cobot`` may be None/False (plain method), True (default COBOT), a dict of switches or a
    CobotConfig.
    """
    if isinstance(method, PeftConfig):
        if rank is not None or cobot is not None or kwargs:
            raise ValueError("pass either a PeftConfig or method/rank/cobot, not both")
        return method
    if cobot is True:
        cobot = CobotConfig()
    elif cobot is False:
        cobot = None
    elif isinstance(cobot, dict):
        cobot = CobotConfig(**cobot)
    elif cobot is not None and not isinstance(cobot, CobotConfig):
        raise ValueError(f"cobot must be None, a bool, a dict or a CobotConfig, got {cobot!r}")
    return PeftConfig(method=method, rank=rank, cobot=cobot, **kwargs)


def differing_keys(a: Any, b: Any, names: tuple[str, str] = ("a", "b")) -> str:
    """Which keys of two configs (dataclasses or mappings, nested) differ, in words:
    "cobot.relation: 'learnable' (a) vs 'fixed' (b); rank: 4 (a) vs 8 (b)", or "nothing"."""
    flat_a, flat_b = _flatten(a), _flatten(b)
    missing = object()
    parts = []
    for key in sorted(set(flat_a) | set(flat_b)):
        x, y = flat_a.get(key, missing), flat_b.get(key, missing)
        if x != y:
            shown = ["(absent)" if v is missing else repr(v) for v in (x, y)]
            parts.append(f"{key}: {shown[0]} ({names[0]}) vs {shown[1]} ({names[1]})")
    return "; ".join(parts) or "nothing"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if hasattr(value, "__dataclass_fields__"):
        value = asdict(value)
    if not isinstance(value, Mapping):
        return {prefix[:-1] or "value": value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping) or hasattr(item, "__dataclass_fields__"):
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out
