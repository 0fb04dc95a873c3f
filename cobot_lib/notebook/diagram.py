"""The data-flow picture of COBOT inside one encoder block (notebook 03): IBC and IBE.

Boxes and arrows drawn with plotly shapes; ``viz.cobot_block_diagram`` is the name the
notebooks use (re-exported there).
"""

from __future__ import annotations

import plotly.graph_objects as go

from ..peft.config import PEFT_METHODS, PeftConfig

__all__ = ["cobot_block_diagram"]

FROZEN, PEFT, IBC, IBE = "#b0b7c3", "#4c78a8", "#f58518", "#54a24b"


def _box(fig: go.Figure, x: float, y: float, text: str, color: str, w: float = 1.5) -> None:
    h = 0.8
    fig.add_shape(
        type="rect",
        x0=x - w / 2,
        x1=x + w / 2,
        y0=y - h / 2,
        y1=y + h / 2,
        fillcolor=color,
        opacity=0.9,
        line={"color": "#333", "width": 1},
    )
    fig.add_annotation(x=x, y=y, text=text, showarrow=False, font={"size": 11})


def _arrow(
    fig: go.Figure,
    x0: float,
    y0: float,
    x1: float,
    y1: float,
    text: str = "",
    color: str = "#333",
    dash: bool = False,
) -> None:
    fig.add_annotation(
        x=x1,
        y=y1,
        ax=x0,
        ay=y0,
        xref="x",
        yref="y",
        axref="x",
        ayref="y",
        showarrow=True,
        arrowhead=3,
        arrowwidth=1.6,
        arrowcolor=color,
        text="",
    )
    if text:
        fig.add_annotation(
            x=(x0 + x1) / 2,
            y=(y0 + y1) / 2 + 0.18,
            text=text,
            showarrow=False,
            font={"size": 10, "color": "#555"},
        )


def cobot_block_diagram(
    method: str = "lora", dim: int = 768, rank: int | None = None, num_blocks: int = 12
) -> go.Figure:
    """Where COBOT acts inside one encoder block ``ell``: the frozen path, the PEFT module
    (A_m, B_m), the intra-block enhancement W_m (IBE, quaternion head) and the inter-block
    communication (IBC): the module's own set lambda_MC_m plus lambda_LM_m, read from the
    relation matrix that mixes the base coefficients c_k of all M modules (Eqs. 15-17; the
    bridge is the folded form of Eq. 21)."""
    if method not in PEFT_METHODS:
        raise ValueError(f"method must be one of {list(PEFT_METHODS)}, got {method!r}")
    config = PeftConfig(method, rank=rank or None)
    rank, per_block = config.rank, config.modules_per_block
    m_total = per_block * num_blocks
    fig = go.Figure()
    # frozen path (row y = 0)
    if method == "lora":
        frozen = [
            (0, f"x (tokens, D={dim})"),
            (2, "norm1 (frozen)"),
            (4.5, "W_qkv x (frozen)"),
            (7.5, "+  on q and v"),
            (10, "attention"),
        ]
    else:
        frozen = [
            (0, f"x (tokens, D={dim})"),
            (2, "norm2 (frozen)"),
            (4.5, "MLP (frozen)"),
            (7.5, "+"),
            (10, "block output"),
        ]
    for x, text in frozen:
        _box(fig, x, 0, text, FROZEN)
    for (x0, _), (x1, _) in zip(frozen, frozen[1:], strict=False):
        _arrow(fig, x0 + 0.75, 0, x1 - 0.75, 0)
    # the PEFT module with COBOT inside (row y = -1.6)
    y = -1.6
    path = [
        (2.6, f"A_m: D→V={rank}", PEFT),
        (4.5, "⊙ (λ_MC_m + λ_LM_m)", IBC),
        (6.4, f"W_m: quaternion {rank}×{rank}<br>({rank**2 // 4} params, IBE)", IBE),
    ]
    if method == "adaptformer":
        path += [(8.3, "ReLU, dropout", PEFT), (10.2, "B_m: V→D, × s", PEFT)]
    else:
        path += [(8.6, "B_m: V→D", PEFT)]
    _arrow(fig, 2.0, -0.4, 2.3, y + 0.4, "LN(x)" if method == "adaptformer" else "")
    for x, text, color in path:
        _box(fig, x, y, text, color, w=1.7)
    for (x0, _, _), (x1, _, _) in zip(path, path[1:], strict=False):
        _arrow(fig, x0 + 0.85, y, x1 - 0.85, y)
    last_x = path[-1][0]
    update = "B_m W_m diag(λ) A_m x" if method == "lora" else "s B_m ReLU(W_m diag(λ) A_m LN(x))"
    _arrow(fig, last_x, y + 0.4, 7.7, -0.4, update)
    # inter-block communication (row y = 2)
    yr = 2.0
    _box(fig, 1.2, yr, f"c_1 … c_M<br>(M={m_total} base sets, each V)", IBC, w=2.2)
    _box(fig, 4.5, yr, f"T_w = T ×₃ S<br>(S: {m_total}×{m_total}, Eq. 15)", IBC, w=2.2)
    _box(fig, 7.8, yr, "λ_LM_m = Σ_k S[m,k] c_k<br>(diag of slice m, Eq. 17)", IBC, w=2.4)
    _arrow(fig, 2.3, yr, 3.4, yr, "T = [diag(c_k)]")
    _arrow(fig, 5.6, yr, 6.6, yr)
    _arrow(fig, 7.8, yr - 0.4, 4.7, y + 0.4, "", color=IBC)
    _box(fig, 3.0, -3.0, "λ_MC_m (own set, V)", IBC, w=1.8)
    _arrow(fig, 3.3, -2.6, 4.3, y - 0.4, color=IBC)
    # other blocks feed the same relation matrix
    for k, bx in enumerate((0.2, 1.2, 2.2)):
        label = ["block 1", "block 2", f"… block {num_blocks}"][k]
        fig.add_annotation(x=bx, y=3.3, text=label, showarrow=False, font={"size": 10})
        _arrow(fig, bx, 3.1, 1.2, yr + 0.4, color=IBC)
    fig.add_annotation(
        x=10.2,
        y=2.9,
        showarrow=False,
        align="left",
        font={"size": 11},
        text="<b>IBC</b> (orange): coefficients shared across all blocks<br>"
        "<b>IBE</b> (green): quaternion mixing inside the module<br>"
        "grey: frozen SAM; blue: the PEFT module",
    )
    fig.update_xaxes(visible=False, range=[-1, 12])
    fig.update_yaxes(visible=False, range=[-3.5, 3.7])
    name = "LoRA (on q and v; the v path is the same)" if method == "lora" else "Adaptformer"
    fig.update_layout(
        title=f"COBOT inside one encoder block ℓ: {name} + COBOT, module m",
        height=580,
        plot_bgcolor="white",
        margin={"l": 10, "r": 10},
    )
    return fig
