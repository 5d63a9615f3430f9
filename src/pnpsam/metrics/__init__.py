"""Evaluation metrics for text-driven image translation (PnP, Splice and PIE-Bench definitions).

Each metric loads its model once (``from_pretrained`` with a hub id or a local folder) and
scores batches on CPU or GPU:

* :class:`DinoStructureDistance` — DINO ViT last-block key self-similarity MSE (structure);
* :class:`ClipScorer` — 100 x cosine(image, text), clamped at 0;
* :func:`psnr`, :func:`ssim`, :func:`mse` — background preservation (no model);
* :class:`PerceptualDistance` — LPIPS (the real one, or a clearly named unweighted stand-in);
* :class:`EditMetrics` — all of them per edit, with the subject / background split.
"""

from typing import TYPE_CHECKING

from pnpsam.lazy import lazy_exports
from pnpsam.metrics.config import (
    ClipScoreConfig,
    LpipsBackend,
    LpipsConfig,
    StructureDistanceConfig,
)

if TYPE_CHECKING:
    from pnpsam.metrics.background import background_preservation, mse, psnr, ssim
    from pnpsam.metrics.clip_score import ClipScorer
    from pnpsam.metrics.lpips import PerceptualDistance
    from pnpsam.metrics.structure import DinoStructureDistance
    from pnpsam.metrics.suite import EditMetrics, EditMetricsConfig

# The metric models need torch and transformers: imported on first use.
__getattr__ = lazy_exports(
    __name__,
    {
        "pnpsam.metrics.background": ("background_preservation", "mse", "psnr", "ssim"),
        "pnpsam.metrics.clip_score": ("ClipScorer",),
        "pnpsam.metrics.lpips": ("PerceptualDistance",),
        "pnpsam.metrics.structure": ("DinoStructureDistance",),
        "pnpsam.metrics.suite": ("EditMetrics", "EditMetricsConfig"),
    },
)

__all__ = [
    "ClipScoreConfig",
    "ClipScorer",
    "DinoStructureDistance",
    "EditMetrics",
    "EditMetricsConfig",
    "LpipsBackend",
    "LpipsConfig",
    "PerceptualDistance",
    "StructureDistanceConfig",
    "background_preservation",
    "mse",
    "psnr",
    "ssim",
]
