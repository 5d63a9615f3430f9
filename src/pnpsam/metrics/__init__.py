"""Evaluation metrics for text-driven image translation (PnP, Splice and PIE-Bench definitions).

Each metric loads its model once (``from_pretrained`` with a hub id or a local folder) and
scores batches on CPU or GPU:

* :class:`DinoStructureDistance` — DINO ViT last-block key self-similarity MSE (structure);
* :class:`ClipScorer` — 100 x cosine(image, text), clamped at 0;
* :func:`psnr`, :func:`ssim`, :func:`mse` — background preservation (no model);
* :class:`PerceptualDistance` — LPIPS (the real one, or a clearly named unweighted stand-in);
* :class:`EditMetrics` — all of them per edit, with the subject / background split.
"""

from pnpsam.metrics.background import background_preservation, mse, psnr, ssim
from pnpsam.metrics.clip_score import ClipScoreConfig, ClipScorer
from pnpsam.metrics.lpips import LpipsBackend, LpipsConfig, PerceptualDistance
from pnpsam.metrics.structure import DinoStructureDistance, StructureDistanceConfig
from pnpsam.metrics.suite import EditMetrics, EditMetricsConfig

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
