"""Intervals and paired differences of the toy comparison (bootstrap over pairs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pnpsam.bench.report import bootstrap_ci, paired_differences
from pnpsam.bench.toy import TOY_SETS, metrics_markdown, toy_summary
from pnpsam.toyworld.pairs import toy_pairs


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_more_items() -> None:
    rng = np.random.default_rng(1)
    small = bootstrap_ci(list(rng.normal(0.5, 0.2, 16)))
    values = rng.normal(0.5, 0.2, 400)
    large = bootstrap_ci(list(values))
    assert small.low < small.mean < small.high and small.n == 16
    assert (large.high - large.low) < (small.high - small.low) / 3
    # for many items it agrees with the normal interval: mean +- 1.96 sd / sqrt(n)
    half = 1.96 * values.std() / 20
    assert large.low == pytest.approx(large.mean - half, abs=0.004)
    assert large.high == pytest.approx(large.mean + half, abs=0.004)
    # pass/fail items: the interval stays inside [0, 1]; constant values give a zero-width one
    hits = bootstrap_ci([1.0] * 12 + [0.0] * 4)
    assert 0.0 <= hits.low < 0.75 < hits.high <= 1.0
    same = bootstrap_ci([0.3] * 5)
    assert same.low == pytest.approx(0.3) and same.high == pytest.approx(0.3)
    assert math.isnan(bootstrap_ci([2.0, math.nan]).low)  # one finite value: no interval
    assert bootstrap_ci([0.1, 0.2, 0.4]) == bootstrap_ci([0.1, 0.2, 0.4])  # seeded


def test_paired_difference_sees_a_shift_that_unpaired_intervals_hide() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0.0, 1.0, 16)  # pairs differ a lot from one another ...
    better = base + 0.05  # ... while the method gains the same 0.05 on every pair
    scores = {
        "pnp": [{"iou": float(v)} for v in base],
        "new": [{"iou": float(v)} for v in better],
    }
    diff = paired_differences(scores, "pnp", ["iou"])["new"]["iou"]
    assert diff.mean == pytest.approx(0.05) and diff.low == pytest.approx(0.05)
    a, b = bootstrap_ci(list(base)), bootstrap_ci(list(better))
    assert b.low < a.high  # the unpaired intervals overlap
    with pytest.raises(ValueError, match="same items"):
        paired_differences({"pnp": scores["pnp"], "x": scores["new"][:3]}, "pnp", ["iou"])


def test_toy_tables_show_intervals_and_differences_to_pnp() -> None:
    def row(spec: str, ious: list[float]) -> dict:
        per_pair = [
            {"iou": v, "color": 1.0, "background": 0.0, "shape": 1.0, "clutter": 0.1} for v in ious
        ]
        means = {k: float(np.mean([p[k] for p in per_pair])) for k in per_pair[0]}
        return {
            "method": spec,
            "spec": spec,
            **means,
            "seconds_per_edit": 1.0,
            "per_pair": per_pair,
        }

    rows = toy_summary([row("pnp", [0.5, 0.6, 0.7]), row("subject", [0.6, 0.7, 0.8])])
    assert rows[1]["diff"]["iou"]["mean"] == pytest.approx(0.1)
    table = metrics_markdown(rows, 3)
    assert "| subject | 0.70 [" in table and "| subject | +0.10 [0.10, 0.10] |" in table
    assert "| pnp | +0.00" not in table  # the reference is not compared with itself


def test_dev_and_held_out_sets_are_fixed_and_disjoint() -> None:
    assert TOY_SETS["dev"] != TOY_SETS["held-out"]
    dev, held = (toy_pairs(4, TOY_SETS[name]) for name in ("dev", "held-out"))
    assert [p.source for p in dev] != [p.source for p in held]
    assert not any(np.array_equal(a.image, b.image) for a in dev for b in held)
