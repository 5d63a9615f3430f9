"""Turn metric rows into the benchmark's summary table (Markdown + CSV), plot and image grid.

Rows are dicts with ``method``, ``item``, ``prompt_index``, ``status`` ("ok" / "failed") and
metric values. Each method's summary gives, per metric, the mean over its ok rows and a 95%
Student-t confidence interval of that mean (``mean +- t(0.975, n-1) * sd / sqrt(n)``; none
for n < 2). Toy-world comparisons, where pass/fail metrics and small pair sets make the t
interval a poor fit, use :func:`bootstrap_ci` (percentile bootstrap over items; fed the per-item
differences of two methods it is the paired bootstrap) and :func:`paired_differences`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from pnpsam.errors import InputError

# Column order of the tables, and the scale PIE-Bench prints each metric at.
METRIC_ORDER = (
    "structure",
    "structure_subject",
    "structure_background",
    "clip_whole",
    "clip_subject",
    "clip_background",
    "clip_edited",
    "psnr_bg",
    "ssim_bg",
    "mse_bg",
    "lpips_bg",
    "lpips_unweighted_bg",
    "seconds",
)
DISPLAY_SCALE = {
    "structure": 1e3,
    "structure_subject": 1e3,
    "structure_background": 1e3,
    "ssim_bg": 1e2,
    "mse_bg": 1e4,
    "lpips_bg": 1e3,
    "lpips_unweighted_bg": 1e3,
}
LOWER_IS_BETTER = {"structure", "structure_subject", "structure_background", "mse_bg"}
LOWER_IS_BETTER |= {"lpips_bg", "lpips_unweighted_bg", "seconds"}


@dataclass(frozen=True)
class Estimate:
    """Mean and 95% confidence interval of one metric for one method (NaN bounds if n < 2)."""

    mean: float
    low: float
    high: float
    n: int


def _finite(values: Sequence[float]) -> tuple[np.ndarray, Estimate | None]:
    """The finite ``values`` as float64, and the estimate itself when fewer than two remain
    (no interval: NaN bounds; no values: NaN mean)."""
    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(finite) == 0:
        return finite, Estimate(math.nan, math.nan, math.nan, 0)
    if len(finite) < 2:
        return finite, Estimate(float(finite.mean()), math.nan, math.nan, 1)
    return finite, None


def mean_ci(values: Sequence[float], level: float = 0.95) -> Estimate:
    """Mean and Student-t interval of the finite ``values`` (inf/NaN are left out)."""
    finite, short = _finite(values)
    if short is not None:
        return short
    n, mean = len(finite), float(finite.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * finite.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n)


def bootstrap_ci(
    values: Sequence[float], level: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Mean and percentile-bootstrap interval of the finite ``values`` (items resampled with
    replacement, ``resamples`` times, seeded so tables are reproducible). Given per-item
    differences ``a_i - b_i`` of two methods on the same items, this is the paired bootstrap."""
    finite, short = _finite(values)
    if short is not None:
        return short
    n, mean = len(finite), float(finite.mean())
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = finite[picks].mean(axis=1)
    low, high = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return Estimate(mean, float(low), float(high), n)


def paired_differences(
    scores: Mapping[str, Sequence[Mapping[str, float]]], reference: str, keys: Sequence[str]
) -> dict[str, dict[str, Estimate]]:
    """Per method, per metric: mean of ``method - reference`` over the same items, with its
    paired-bootstrap interval. ``scores``: method -> per-item metric dicts, items in one order
    for every method (NaN/inf entries drop that item from that metric's difference)."""
    if reference not in scores:
        raise InputError(f"reference method {reference!r} is not among {sorted(scores)}")
    base = scores[reference]
    out: dict[str, dict[str, Estimate]] = {}
    for method, items in scores.items():
        if len(items) != len(base):
            raise InputError(
                f"{method!r} has {len(items)} items but {reference!r} has {len(base)}: "
                "paired differences need the same items"
            )
        out[method] = {
            k: bootstrap_ci([a[k] - b[k] for a, b in zip(items, base, strict=True)]) for k in keys
        }
    return out


@dataclass
class MethodSummary:
    """One table row: a method's item counts and metric estimates."""

    method: str
    items_ok: int
    items_failed: int
    metrics: dict[str, Estimate]


def latest_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last row per (method, item, prompt_index): re-runs append, the newest counts."""
    latest: dict[tuple[Any, Any, Any], Mapping[str, Any]] = {}
    for row in rows:
        latest[(row["method"], row["item"], row.get("prompt_index"))] = row
    return list(latest.values())


def summarize(rows: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> list[MethodSummary]:
    """Per method (in ``methods`` order): counts and mean/CI of every metric in its ok rows."""
    current = latest_rows(rows)
    summaries = []
    for method in methods:
        mine = [r for r in current if r["method"] == method]
        ok = [r for r in mine if r["status"] == "ok"]
        failed_items = {r["item"] for r in mine if r["status"] == "failed"}
        keys = [k for k in METRIC_ORDER if any(k in r for r in ok)]
        summaries.append(
            MethodSummary(
                method,
                len({r["item"] for r in ok} - failed_items),
                len(failed_items),
                {k: mean_ci([float(r[k]) for r in ok if k in r]) for k in keys},
            )
        )
    return summaries


def _columns(summaries: Sequence[MethodSummary]) -> list[str]:
    present = {k for s in summaries for k in s.metrics}
    return [k for k in METRIC_ORDER if k in present]


def _header(key: str) -> str:
    scale = DISPLAY_SCALE.get(key)
    arrow = "↓" if key in LOWER_IS_BETTER else "↑"
    return f"{key} ×10^{round(math.log10(scale))} {arrow}" if scale else f"{key} {arrow}"


def markdown_table(summaries: Sequence[MethodSummary]) -> str:
    """Markdown: one row per method, ``mean ± half-width`` at PIE-Bench's display scales."""
    columns = _columns(summaries)
    lines = [
        "| method | items ok | failed | " + " | ".join(_header(c) for c in columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for summary in summaries:
        cells = []
        for key in columns:
            estimate = summary.metrics.get(key)
            scale = DISPLAY_SCALE.get(key, 1.0)
            if estimate is None or estimate.n == 0:
                cells.append("—")
            elif math.isnan(estimate.low):
                cells.append(f"{estimate.mean * scale:.2f}")
            else:
                half = (estimate.high - estimate.mean) * scale
                cells.append(f"{estimate.mean * scale:.2f} ± {half:.2f}")
        counts = f"{summary.items_ok} | {summary.items_failed}"
        lines.append(f"| {summary.method} | {counts} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_table(summaries: Sequence[MethodSummary]) -> str:
    """CSV in raw units: per metric ``_mean``, ``_ci_low``, ``_ci_high`` and ``_n`` columns."""
    columns = _columns(summaries)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["method", "items_ok", "items_failed"]
    header += [f"{c}_{part}" for c in columns for part in ("mean", "ci_low", "ci_high", "n")]
    writer.writerow(header)
    for summary in summaries:
        row: list[Any] = [summary.method, summary.items_ok, summary.items_failed]
        for key in columns:
            estimate = summary.metrics.get(key, Estimate(math.nan, math.nan, math.nan, 0))
            row += [estimate.mean, estimate.low, estimate.high, estimate.n]
        writer.writerow(row)
    return out.getvalue()


def tradeoff_plot(summaries: Sequence[MethodSummary], path: Path) -> bool:
    """Structure distance (x, lower = structure kept) vs CLIP (y) per method, with 95% CIs.

    One panel for the whole image and, when subject masks were given, one for the subject.
    Returns False (and writes nothing) when no method has both metrics.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = [
        (x, "clip_whole")
        for x in ("structure", "structure_subject")
        if any(x in s.metrics and "clip_whole" in s.metrics for s in summaries)
    ]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (x_key, y_key) in zip(axes[0], panels, strict=True):
        for summary in summaries:
            x, y = summary.metrics.get(x_key), summary.metrics.get(y_key)
            if x is None or y is None or x.n == 0 or y.n == 0:
                continue
            ax.errorbar(
                x.mean * 1e3,
                y.mean,
                xerr=None
                if math.isnan(x.low)
                else [[(x.mean - x.low) * 1e3], [(x.high - x.mean) * 1e3]],
                yerr=None if math.isnan(y.low) else [[y.mean - y.low], [y.high - y.mean]],
                fmt="o",
                capsize=3,
                label=summary.method,
            )
            ax.annotate(
                summary.method,
                (x.mean * 1e3, y.mean),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set_xlabel(f"{x_key} ×10³ (lower = structure kept)")
        ax.set_ylabel(f"{y_key} (higher = follows the text)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.suptitle("Structure vs text alignment (mean, 95% CI)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
