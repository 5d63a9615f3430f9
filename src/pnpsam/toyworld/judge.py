"""A transparent judge of toy-world images: background, subject mask, subject colour and shape.

No weights: the world's palette is known, so each step is a colour-model decision.

1. Background: the median colour of the image's border frame (the subject never reaches the
   border) -> the nearest background base colour.
2. Subject mask: every pixel is assigned to its nearest colour prototype -- the detected
   background's texture shades and clutter colour, the border median itself, or one of the
   subject palette colours. Palette pixels, morphologically opened (drops thin clutter and
   isolated pixels), largest connected component, holes filled.
3. Colour: majority palette label inside the mask's interior (edges blend with the background).
4. Shape: taper (top third vs bottom third of the bounding box) separates the upward
   triangle; how full the bounding box's corners are separates square (~1) from circle (~0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pnpsam.toyworld.world import BACKGROUND_STYLES, BACKGROUNDS, COLORS

NOT_FOUND = "none"
"""Label given when no subject is found (never equals a world label)."""


@dataclass(frozen=True)
class JudgeConfig:
    """Decision constants of the judge (defaults measured on renders and toy-model samples)."""

    border: int = 3  # pixels of the frame used for the background colour
    texture_shades: tuple[float, ...] = (0.8, 1.0, 1.2)  # textures modulate the base +-20%
    min_subject_fraction: float = 0.01  # smaller components are not a subject
    triangle_taper: float = 0.6  # top-third / bottom-third area below: triangle (~0.3; others ~1)
    # Fill of the bounding box's four corner triangles (legs = corner_size x the box's short
    # side) above: square. Renders: circle 0, square 1. Through the first toy VAE (rounded
    # corners) circles measured 0-0.16 and squares 0.10-0.86 (5-95th percentiles); this rule
    # read 94% of those shapes right where the whole-box fill ratio (threshold 0.85) read 91%.
    square_corners: float = 0.2
    corner_size: float = 0.25
    color_erosion: int = 1  # colour is voted on the mask's interior, away from blended edges


@dataclass(frozen=True)
class Judgement:
    """What the judge reads in one image: labels (``NOT_FOUND`` for a missing subject) and the
    HxW bool subject mask (True = subject)."""

    color: str
    shape: str
    background: str
    subject_mask: np.ndarray


_PALETTE_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[n] for n in _PALETTE_NAMES], dtype=np.float32)
_BASES = np.array([BACKGROUND_STYLES[b][0] for b in BACKGROUNDS], dtype=np.float32)


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 uint8, got shape {image.shape} dtype {image.dtype}")


def classify_background(image: np.ndarray, cfg: JudgeConfig = JudgeConfig()) -> str:
    """Background name whose base colour is nearest the median of HxWx3 uint8 ``image``'s
    border frame."""
    _check_image(image)
    b = cfg.border
    frame = np.concatenate(
        [image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3),
         image[:, :b].reshape(-1, 3), image[:, -b:].reshape(-1, 3)]
    ).astype(np.float32)  # fmt: skip
    median = np.median(frame, axis=0)
    return BACKGROUNDS[int(np.argmin(((_BASES - median) ** 2).sum(axis=1)))]


def palette_labels(
    image: np.ndarray, background: str, cfg: JudgeConfig = JudgeConfig()
) -> np.ndarray:
    """HxW int: index into the colour palette of each pixel's nearest prototype, -1 where a
    background prototype (``background``'s shades, its clutter colour, the border median) is
    nearer."""
    _check_image(image)
    base, clutter = BACKGROUND_STYLES[background]
    b = cfg.border
    border_median = np.median(
        np.concatenate([image[:b].reshape(-1, 3), image[-b:].reshape(-1, 3)]), axis=0
    )
    background_protos = np.array(
        [np.array(base) * s for s in cfg.texture_shades] + [clutter, border_median],
        dtype=np.float32,
    )
    protos = np.concatenate([_PALETTE, background_protos])
    pixels = image.reshape(-1, 1, 3).astype(np.float32)
    nearest = ((pixels - protos[None]) ** 2).sum(axis=2).argmin(axis=1)
    labels = np.where(nearest < len(_PALETTE), nearest, -1)
    return labels.reshape(image.shape[:2])


def subject_mask_from_labels(labels: np.ndarray, cfg: JudgeConfig = JudgeConfig()) -> np.ndarray:
    """HxW bool subject mask from :func:`palette_labels`: palette pixels, opened, largest
    component, holes filled; all False when no component reaches ``min_subject_fraction``."""
    candidate = ndimage.binary_opening(labels >= 0, structure=np.ones((3, 3), dtype=bool))
    components, count = ndimage.label(candidate)
    if count == 0:
        return np.zeros(labels.shape, dtype=bool)
    sizes = np.bincount(components.ravel())[1:]
    largest = int(np.argmax(sizes)) + 1
    if sizes[largest - 1] < cfg.min_subject_fraction * labels.size:
        return np.zeros(labels.shape, dtype=bool)
    return np.asarray(ndimage.binary_fill_holes(components == largest))


def bounding_box_crop(mask: np.ndarray) -> np.ndarray:
    """The hxw crop of a non-empty HxW bool ``mask`` to the bounding box of its True pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def corner_fill(box: np.ndarray, corner_size: float) -> float:
    """Mean fill in [0, 1] of the four corner triangles of an hxw bool bounding-box crop; each
    triangle's legs are ``corner_size`` x min(h, w) pixels (a square ~1, an inscribed circle 0)."""
    k = max(1, round(corner_size * min(box.shape)))
    rows, cols = np.mgrid[0:k, 0:k]
    triangle = rows + cols < k  # the corner at (0, 0) of a k x k patch
    corners = (box[:k, :k], box[:k, -k:][:, ::-1], box[-k:, :k][::-1], box[-k:, -k:][::-1, ::-1])
    return float(np.mean([corner[triangle].mean() for corner in corners]))


def classify_shape(mask: np.ndarray, cfg: JudgeConfig = JudgeConfig()) -> str:
    """Shape name of an HxW bool subject mask: a triangle is much narrower in the top third of
    its bounding box than in the bottom third; of the rest, squares fill their box's corners,
    circles leave them empty."""
    if not mask.any():
        return NOT_FOUND
    box = bounding_box_crop(mask)
    third = max(1, len(box) // 3)
    taper = box[:third].sum() / max(1, box[-third:].sum())
    if taper < cfg.triangle_taper:
        return "triangle"
    return "square" if corner_fill(box, cfg.corner_size) >= cfg.square_corners else "circle"


def judge_image(image: np.ndarray, cfg: JudgeConfig = JudgeConfig()) -> Judgement:
    """Read background, subject mask, colour and shape from one HxWx3 uint8 RGB image."""
    background = classify_background(image, cfg)
    labels = palette_labels(image, background, cfg)
    mask = subject_mask_from_labels(labels, cfg)
    if not mask.any():
        return Judgement(NOT_FOUND, NOT_FOUND, background, mask)
    interior = ndimage.binary_erosion(mask, iterations=cfg.color_erosion)
    voters = (interior if interior.any() else mask) & (labels >= 0)
    votes = np.bincount(labels[voters], minlength=len(_PALETTE_NAMES))
    return Judgement(
        color=_PALETTE_NAMES[int(votes.argmax())],
        shape=classify_shape(mask, cfg),
        background=background,
        subject_mask=mask,
    )


def judge_images(
    images: Sequence[np.ndarray] | np.ndarray, cfg: JudgeConfig = JudgeConfig()
) -> list[Judgement]:
    """:func:`judge_image` over NxHxWx3 uint8 images."""
    return [judge_image(np.asarray(image), cfg) for image in images]
