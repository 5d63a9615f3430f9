"""The report's scheme 3: weaken the background in pixel space, then restore brightness.

Images here are ``HxWx3 float32`` RGB in ``[0, 1]``; masks ``HxW float32`` in ``[0, 1]``
(1 = subject). Soft mask values blend linearly between the subject and background treatment.
Luminance is Rec.601 luma ``Y`` (OpenCV's RGB -> YCrCb).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from pnpsam.errors import InputError
from pnpsam.imageio import check_rgb_float
from pnpsam.masks.config import BACKGROUND_MODES, RESTORE_MODES, BackgroundMode, RestoreMode
from pnpsam.masks.ops import as_mask, feather_mask, grow_mask

_EPS = 1e-6


def _check_pair(image: np.ndarray, mask: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = check_rgb_float(image, name)
    weights = as_mask(mask)
    if weights.shape != rgb.shape[:2]:
        raise InputError(f"mask shape {weights.shape} differs from {name} size {rgb.shape[:2]}")
    return rgb, weights


def _check_factor(factor: float) -> None:
    if not 0.0 < factor <= 1.0:
        raise InputError(f"dim factor must be in (0, 1], got {factor}")


def background_gain(mask: np.ndarray, mode: BackgroundMode, factor: float = 0.5) -> np.ndarray:
    """Per-pixel multiplier ``HxW float32`` that weakening applies: 1 on the subject.

    ``keep``: 1 everywhere; ``remove``: ``mask`` (background -> 0); ``dim``:
    ``factor + (1 - factor) * mask`` (background x factor). ``mean`` and ``blur`` replace the
    background rather than scale it, so they have no gain (``weaken_background`` does them).
    """
    weights = as_mask(mask)
    if mode == "keep":
        return np.ones_like(weights)
    if mode == "remove":
        return weights
    if mode == "dim":
        _check_factor(factor)
        return (factor + (1.0 - factor) * weights).astype(np.float32)
    raise InputError(f"background mode must be one of {BACKGROUND_MODES}, got {mode!r}")


def weaken_background(
    image: np.ndarray, mask: np.ndarray, mode: BackgroundMode, factor: float = 0.5
) -> np.ndarray:
    """Weaken the background of an ``HxWx3 float32 [0, 1]`` image before inversion.

    ``keep`` returns a copy, ``remove`` fills the background with 0 (the report's failed variant),
    ``dim`` multiplies it by ``factor`` (the report's working variant, factor 0.5); ``mean`` fills
    it with its (mask-weighted) mean colour, ``blur`` with a Gaussian blur of the background
    alone (sigma = 1/8 of the short side, normalised by the blurred background weight so the
    subject's colour does not bleed out).
    """
    rgb, weights = _check_pair(image, mask, "image")
    if mode not in ("mean", "blur"):
        return rgb * background_gain(weights, mode, factor)[..., None]
    outside = (1.0 - weights)[..., None]
    if float(outside.sum()) <= _EPS:
        return rgb.copy()
    if mode == "mean":
        fill = (rgb * outside).sum(axis=(0, 1)) / outside.sum()
    else:
        sigma = min(rgb.shape[:2]) / 8.0
        blurred = cv2.GaussianBlur(rgb * outside, (0, 0), sigma)
        weight = cv2.GaussianBlur(outside[..., 0], (0, 0), sigma)[..., None]
        fill = blurred / np.maximum(weight, _EPS)
    return (rgb * weights[..., None] + fill * outside).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """Rec.601 luma ``HxW float32`` of an ``HxWx3 float32 [0, 1]`` RGB image."""
    rgb = check_rgb_float(image, "image")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0]


def _weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """Mean of ``values`` under soft ``weights``; NaN when the weights are all zero."""
    total = float(weights.sum())
    return float((values * weights).sum() / total) if total > _EPS else float("nan")


def _weighted_mean_std(values: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    mean = _weighted_mean(values, weights)
    if np.isnan(mean):
        raise InputError("the background is empty, so its luminance cannot be matched")
    return mean, _weighted_mean((values - mean) ** 2, weights) ** 0.5


def restore_brightness(
    output: np.ndarray,
    mask: np.ndarray,
    mode: RestoreMode,
    factor: float = 0.5,
    source: np.ndarray | None = None,
) -> np.ndarray:
    """Undo the darkening of a decoded ``HxWx3 float32 [0, 1]`` output; result clipped to [0, 1].

    - ``none``: a copy.
    - ``global`` (the report's fix): the whole output x ``1 / factor``. The subject, which was never
      dimmed, gets brightened too.
    - ``masked``: x ``1 / factor`` only where the background was dimmed, following the soft mask:
      gain ``1 + (1 / factor - 1) * (1 - mask)``, the exact inverse of ``dim``.
    - ``luminance``: match the mean and standard deviation of the output background's luma to
      the ORIGINAL ``source`` background's (``source`` required: the image before weakening). Each
      pixel's RGB is scaled by ``Y_target / Y``, which keeps hue and chromaticity; the change is
      weighted by ``1 - mask`` so the subject is untouched. Caveat: the target background is meant
      to differ from the source, so this pulls its brightness back to the source's level.
    """
    rgb, weights = _check_pair(output, mask, "output")
    if mode == "none":
        return rgb.copy()
    if mode == "global":
        _check_factor(factor)
        return np.clip(rgb / factor, 0.0, 1.0)
    if mode == "masked":
        return np.clip(rgb / background_gain(weights, "dim", factor)[..., None], 0.0, 1.0)
    if mode == "luminance":
        if source is None:
            raise InputError("restore='luminance' needs the source image (before weakening)")
        src, _ = _check_pair(source, weights, "source")
        background = 1.0 - weights
        y_out = luminance(rgb)
        mean_out, std_out = _weighted_mean_std(y_out, background)
        mean_src, std_src = _weighted_mean_std(luminance(src), background)
        # A flat output background has no spread to rescale: shift its mean only.
        scale = std_src / std_out if std_out > _EPS else 1.0
        y_target = np.clip(mean_src + (y_out - mean_out) * scale, 0.0, None)
        gain = y_target / np.maximum(y_out, _EPS)
        blended_gain = 1.0 + (gain - 1.0) * background
        return np.clip(rgb * blended_gain[..., None], 0.0, 1.0)
    raise InputError(f"restore mode must be one of {RESTORE_MODES}, got {mode!r}")


@dataclass(frozen=True)
class DarknessStats:
    """Mean luma of an output against its source, overall and per region (the report's
    "darkness problem": outputs of ``dim`` come out darker than the source)."""

    output_mean: float
    source_mean: float
    output_background_mean: float
    source_background_mean: float
    output_subject_mean: float
    source_subject_mean: float

    @property
    def ratio(self) -> float:
        """Output / source mean luma over the whole image (1 = no darkening)."""
        return self.output_mean / max(self.source_mean, _EPS)

    @property
    def background_ratio(self) -> float:
        return self.output_background_mean / max(self.source_background_mean, _EPS)

    @property
    def subject_ratio(self) -> float:
        return self.output_subject_mean / max(self.source_subject_mean, _EPS)

    def as_dict(self) -> dict[str, float]:
        """All means and ratios, for metrics files."""
        return {
            **asdict(self),
            "ratio": self.ratio,
            "background_ratio": self.background_ratio,
            "subject_ratio": self.subject_ratio,
        }


def paste_background(
    output: np.ndarray, source: np.ndarray, mask: np.ndarray, edge_px: int | None = None
) -> np.ndarray:
    """``output`` (``HxWx3 float32 [0, 1]``) with the ``source`` photo's pixels outside the
    subject ``mask`` (HxW in [0, 1]): background intent "keep" by pixels. The mask is grown by
    ``edge_px`` and feathered (Gaussian, sigma 0.7 ``edge_px``), so the subject's own edge is
    about 90% the output's and the seam falls on the background; None = 1/64 of the shorter
    side (1 px on the 64 px toy, 8 px, one latent cell, at 512 px)."""
    rgb, weights = _check_pair(output, mask, "output")
    src, _ = _check_pair(source, weights, "source")
    edge = max(1, round(min(weights.shape) / 64)) if edge_px is None else edge_px
    inside = feather_mask(grow_mask(weights, edge), float(edge) * 1.4)[..., None]
    return (inside * rgb + (1.0 - inside) * src).astype(np.float32)


def measure_darkness(output: np.ndarray, source: np.ndarray, mask: np.ndarray) -> DarknessStats:
    """Mean luma of ``output`` and ``source`` (both ``HxWx3 float32 [0, 1]``, same size), overall
    and weighted by the background (``1 - mask``) and subject (``mask``) soft weights."""
    out_rgb, weights = _check_pair(output, mask, "output")
    src_rgb, _ = _check_pair(source, weights, "source")
    y_out, y_src = luminance(out_rgb), luminance(src_rgb)
    background = 1.0 - weights
    return DarknessStats(
        output_mean=float(y_out.mean()),
        source_mean=float(y_src.mean()),
        output_background_mean=_weighted_mean(y_out, background),
        source_background_mean=_weighted_mean(y_src, background),
        output_subject_mean=_weighted_mean(y_out, weights),
        source_subject_mean=_weighted_mean(y_src, weights),
    )
