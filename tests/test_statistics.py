"""experiments.statistics against independent oracles: scipy's t-test and its confidence
interval, Holm's procedure in its sequential (reject / stop) form, and closed forms."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cobot_lib.experiments.statistics import (
    Interval,
    compare,
    holm,
    multiplicity_note,
    paired_differences,
    t_interval,
    verdict,
)


def test_interval_and_p_match_scipy_paired_t_test():
    rng = np.random.default_rng(15)
    a, b = rng.normal(70, 2, 7), rng.normal(70.5, 2, 7)
    d = paired_differences(dict(enumerate(a)), dict(enumerate(b)))
    got = t_interval(d)
    test = stats.ttest_rel(a, b)  # oracle: scipy's paired t-test and its interval
    ci = test.confidence_interval(0.95)
    assert got.low == pytest.approx(ci.low, rel=1e-12)
    assert got.high == pytest.approx(ci.high, rel=1e-12)
    assert got.p == pytest.approx(test.pvalue, rel=1e-10)
    assert got.n == 7 and got.mean == pytest.approx(np.mean(a - b), rel=1e-12)


def test_interval_closed_form_for_two_seeds():
    # n = 2: t_{0.975, 1} = tan(pi * 0.475) (Cauchy quantile), se = |d1 - d2| / 2
    got = t_interval([1.0, 3.0])
    q = math.tan(math.pi * (0.975 - 0.5))
    assert got.low == pytest.approx(2.0 - q * 1.0, rel=1e-9)
    assert got.high == pytest.approx(2.0 + q * 1.0, rel=1e-9)


def test_pairing_by_seed_ignores_order_and_unpaired_seeds():
    row = pd.Series({3: 10.0, 1: 12.0, 7: 99.0})
    ref = pd.Series({1: 11.0, 3: 9.5, 5: 0.0})
    assert paired_differences(row, ref).tolist() == [1.0, 0.5]  # seeds 1 and 3
    with pytest.raises(ValueError, match="no seed in common"):
        paired_differences({1: 1.0}, {2: 1.0})
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([1.0])


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0.1, 0.9, "better"),
        (-0.9, -0.1, "worse"),
        (-0.4, 0.3, "no difference larger than +-0.5 points"),
        (-0.6, 0.3, "undecided"),
        (-0.5, 0.2, "undecided"),  # touching the bound is not inside it
    ],
)
def test_verdict_rules(low, high, expected):
    interval = Interval(5, (low + high) / 2, 1.0, 0.1, low, high, 0.5, 0.95)
    assert verdict(interval, 0.5) == expected


def test_holm_matches_the_sequential_procedure():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p = rng.uniform(0, 0.1, int(rng.integers(1, 9)))
        alpha, m = 0.05, len(p)
        rejected = set()  # oracle: reject p_(k) while p_(k) <= alpha / (m - k + 1), then stop
        for k, i in enumerate(np.argsort(p)):
            if p[i] > alpha / (m - k):
                break
            rejected.add(int(i))
        assert {i for i, q in enumerate(holm(p)) if q <= alpha} == rejected


def test_compare_table_and_family_reading():
    seeds = range(6)
    rng = np.random.default_rng(2)
    base = rng.normal(60, 3, 6)
    scores = pd.DataFrame(
        [base, base + 2 + rng.normal(0, 0.2, 6), base + rng.normal(0, 0.05, 6)],
        index=["ref", "up", "same"], columns=list(seeds),
    )  # fmt: skip
    table = compare(scores, "ref", bound=0.5).set_index("row")
    assert table.loc["up", "verdict"] == "better"
    assert table.loc["same", "verdict"] == "no difference larger than +-0.5 points"
    wide = stats.t.ppf(1 - 0.05 / 4, 5) * table.loc["up", "se"]  # Bonferroni, 2 comparisons
    assert table.loc["up", "high_bonf"] - table.loc["up", "d"] == pytest.approx(wide, rel=1e-9)
    four = compare(scores, "ref", bound=0.5, family=4).set_index("row")
    assert (four["p_holm"] >= table["p_holm"]).all()
    assert "2 paired comparisons" in multiplicity_note(2)


@settings(max_examples=60, deadline=None)
@given(
    d=st.lists(st.floats(-50, 50, allow_nan=False), min_size=2, max_size=12),
    shift=st.floats(-10, 10),
    scale=st.floats(0.1, 10),
)
def test_interval_is_equivariant_and_holds_the_mean(d, shift, scale):
    base = t_interval(d)
    assert base.low <= base.mean <= base.high
    moved = t_interval([scale * x + shift for x in d])
    tol = 1e-6 * (1 + abs(shift) + scale * (50 + base.high - base.low))
    assert moved.low == pytest.approx(scale * base.low + shift, abs=tol)
    assert moved.high == pytest.approx(scale * base.high + shift, abs=tol)
    wider = t_interval(d, 0.99)
    assert wider.low <= base.low + 1e-9 and base.high <= wider.high + 1e-9
