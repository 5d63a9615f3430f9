"""Measurements of meaning in the toy world (pure NumPy/OpenCV on arrays, no I/O).

- structure kept: :func:`subject_iou` of an output's subject mask (from the judge) with the
  source's exact mask;
- text followed on the subject: :func:`subject_color` (nearest palette colour of the median pixel
  inside a mask) or the judge's colour label, scored by :func:`label_accuracy`;
- background follows the text: the judge's background label, scored by :func:`label_accuracy`;
- old background structure comes back: :func:`clutter_survival`;
- all of them for one edit of a rendered scene: :func:`score_edit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from pnpsam.toyworld.judge import judge_image
from pnpsam.toyworld.world import COLORS, RenderedScene, SceneSpec


class Labelled(Protocol):
    """Anything with toy-world labels (a ``SceneSpec`` or a judge's ``Judgement``)."""

    @property
    def color(self) -> str: ...
    @property
    def shape(self) -> str: ...
    @property
    def background(self) -> str: ...


def _check_masks(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"masks must be two HxW arrays of one shape, got {a.shape} and {b.shape}")


def subject_iou(mask: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of two HxW bool masks in [0, 1]; 1.0 when both are empty."""
    _check_masks(mask, reference)
    a, b = mask.astype(bool), reference.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def mean_iou(masks: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """Mean :func:`subject_iou` over paired masks."""
    if len(masks) != len(references) or not masks:
        raise ValueError(
            f"need equally many masks and references (>0): {len(masks)} vs {len(references)}"
        )
    return float(np.mean([subject_iou(m, r) for m, r in zip(masks, references, strict=True)]))


def label_accuracy(predicted: Sequence[Labelled], truth: Sequence[Labelled]) -> dict[str, float]:
    """Fractions in [0, 1] of ``predicted`` matching ``truth`` on ``color``, ``shape``,
    ``background`` and ``all`` three at once."""
    if len(predicted) != len(truth) or not predicted:
        raise ValueError(
            f"need equally many predictions and truths (>0): {len(predicted)} vs {len(truth)}"
        )
    hits = np.array(
        [
            (p.color == t.color, p.shape == t.shape, p.background == t.background)
            for p, t in zip(predicted, truth, strict=True)
        ],
        dtype=bool,
    )
    return {
        "color": float(hits[:, 0].mean()),
        "shape": float(hits[:, 1].mean()),
        "background": float(hits[:, 2].mean()),
        "all": float(hits.all(axis=1).mean()),
    }


def subject_color(image: np.ndarray, mask: np.ndarray) -> str:
    """Palette colour name nearest (RGB distance) to the median pixel of HxWx3 uint8 ``image``
    inside HxW bool ``mask`` (e.g. the source's subject mask, to ask "did the colour change")."""
    if image.shape[:2] != mask.shape or image.ndim != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must share HxW")
    if not mask.any():
        raise ValueError("mask is empty; no subject pixels to read a colour from")
    median = np.median(image[mask.astype(bool)].astype(np.float64), axis=0)
    names = list(COLORS)
    palette = np.array([COLORS[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(((palette - median) ** 2).sum(axis=1)))]


def structure_map(image: np.ndarray, kernel: int = 7) -> np.ndarray:
    """HxW float32 local structure of HxWx3 uint8 ``image``: per-pixel RGB distance from the
    ``kernel`` x ``kernel`` median (high on stalks, stones, stars; low on smooth texture)."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"image must be HxWx3 uint8, got {image.shape} {image.dtype}")
    median = cv2.medianBlur(image, kernel).astype(np.float32)
    return np.asarray(np.linalg.norm(image.astype(np.float32) - median, axis=2))


def clutter_survival(
    source_clutter: np.ndarray, output: np.ndarray, exclude: np.ndarray | None = None
) -> float:
    """Does the source's background clutter come back at the same places in ``output``?

    Pearson correlation in [-1, 1] between the source's HxW bool clutter mask and the
    :func:`structure_map` of HxWx3 uint8 ``output``, over pixels not in HxW bool ``exclude``
    (pass the union of source and output subject masks). About 0 = clutter gone or moved
    elsewhere; the source image itself scores roughly 0.5-0.9 depending on the background.
    """
    structure = structure_map(output)
    _check_masks(source_clutter, structure)
    keep = np.ones_like(source_clutter, dtype=bool) if exclude is None else ~exclude.astype(bool)
    if exclude is not None:
        _check_masks(exclude, structure)
    x, y = source_clutter[keep].astype(np.float64), structure[keep].astype(np.float64)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


@dataclass(frozen=True)
class EditScores:
    """How an edit of a toy scene did. ``subject_iou``: judged output subject vs the source's
    exact mask, in [0, 1]; ``color_follows`` / ``background_follows``: the judge reads the target
    prompt's colour / background; ``shape_kept``: the judge reads the source's shape;
    ``clutter_survival``: see :func:`clutter_survival` (~0 = old clutter gone)."""

    subject_iou: float
    color_follows: bool
    background_follows: bool
    shape_kept: bool
    clutter_survival: float


def score_edit(source: RenderedScene, target: SceneSpec, output: np.ndarray) -> EditScores:
    """Score HxWx3 uint8 ``output``, an edit of rendered ``source`` toward ``target``'s caption."""
    if output.shape != source.image.shape:
        raise ValueError(f"output {output.shape} must match the source image {source.image.shape}")
    judged = judge_image(output)
    return EditScores(
        subject_iou=subject_iou(judged.subject_mask, source.subject_mask),
        color_follows=judged.color == target.color,
        background_follows=judged.background == target.background,
        shape_kept=judged.shape == target.shape,
        clutter_survival=clutter_survival(
            source.clutter_mask, output, source.subject_mask | judged.subject_mask
        ),
    )
