"""Trainable-parameter counts against the paper (Table 4) and METHOD.md's closed forms."""

from __future__ import annotations

import math

import pytest

from cobot_lib import apply_peft, build_sam, count_trainable, unload


def paper_k(n: int) -> float:
    """Table 4 prints counts truncated to 0.1K (322,752 -> "322.7K"), not rounded."""
    return math.floor(n / 100) / 10


def lora_count(L: int, D: int, V: int) -> int:  # METHOD.md section 1: 2 * (D*V + V*D) per block
    return L * 2 * (D * V + V * D)


def adaptformer_count(L: int, D: int, V: int) -> int:  # 2D + (D*V + V) + (V*D + D) per block
    return L * (2 * D + (D * V + V) + (V * D + D))


def cobot_groups(M: int, V: int) -> dict[str, int]:  # M*V + M*V + M^2 + M*V^2/4
    return {
        "cobot_coefficients": 2 * M * V,
        "cobot_relation_S": M * M,
        "cobot_head_W": M * V * V // 4,
    }


@pytest.fixture(scope="module")
def vit_b():
    return build_sam("vit_b")


@pytest.mark.parametrize(
    "method, cobot, table4_k",
    [
        ("lora", False, 147.4),
        ("lora", True, 148.3),
        ("adaptformer", False, 322.7),
        ("adaptformer", True, 324.0),
    ],
)
def test_table4_image_encoder_counts(vit_b, method, cobot, table4_k):
    summary = apply_peft(vit_b, method, cobot=cobot)
    try:
        assert paper_k(summary.image_encoder) == table4_k
        V, L, D = summary.config.rank, 12, 768
        M = 2 * L if method == "lora" else L
        base = lora_count(L, D, V) if method == "lora" else adaptformer_count(L, D, V)
        assert summary.groups["peft"] == base
        expected_cobot = cobot_groups(M, V) if cobot else {}
        for group, n in expected_cobot.items():
            assert summary.groups[group] == n, group
        assert summary.cobot == sum(expected_cobot.values())
        # the paper's "+0.9K" / "+1.3K" are differences of the truncated totals
        if cobot:
            added = paper_k(summary.image_encoder) - paper_k(summary.image_encoder - summary.cobot)
            assert round(added, 1) == {"lora": 0.9, "adaptformer": 1.3}[method]
        # image encoder + decoder = everything trainable, and count_trainable agrees
        assert summary.total == count_trainable(vit_b)
        assert summary.groups["mask_decoder"] == count_trainable(vit_b.mask_decoder)
    finally:
        unload(vit_b)


def test_reference_rows_and_full(tiny_sam):
    total = sum(p.numel() for p in tiny_sam.parameters())
    assert apply_peft(tiny_sam, "freeze").total == 0
    unload(tiny_sam)
    s = apply_peft(tiny_sam, "decoder")
    assert s.image_encoder == 0 and s.total == sum(
        p.numel() for p in tiny_sam.mask_decoder.parameters()
    )
    unload(tiny_sam)
    assert apply_peft(tiny_sam, "full").total == total
    unload(tiny_sam)
    assert count_trainable(tiny_sam) == total  # unload restored the flags


@pytest.mark.parametrize(
    "switches, dropped",
    [
        ({"coefficient_sets": "single"}, {"cobot_coefficients": 12 * 16}),  # no lambda_MC
        ({"relation": "fixed"}, {"cobot_relation_S": 144}),
        ({"relation": "off"}, {"cobot_relation_S": 144}),
        ({"head": "none"}, {"cobot_head_W": 12 * 16 * 16 // 4}),
    ],
)
def test_ablation_switches_change_counts(tiny_sam, switches, dropped):
    full = cobot_groups(12, 16)
    s = apply_peft(tiny_sam, "adaptformer", cobot=switches)
    for group, n in dropped.items():
        assert s.groups.get(group, 0) == full[group] - n
    unload(tiny_sam)


def test_linear_head_has_v_squared(tiny_sam):
    s = apply_peft(tiny_sam, "lora", rank=8, cobot={"head": "linear"})
    assert s.groups["cobot_head_W"] == 24 * 8 * 8
