"""The toy-world judge reads fresh renders (clean and degraded like model samples) correctly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage

from pnpsam.toyworld.judge import (
    NOT_FOUND,
    bounding_box_crop,
    classify_shape,
    corner_fill,
    judge_image,
    judge_images,
)
from pnpsam.toyworld.measure import label_accuracy, mean_iou
from pnpsam.toyworld.world import SHAPES, SceneSpec, render, sample_specs, shape_mask

# Seeds far from anything used elsewhere: these renders are "fresh".
_SPEC_SEED, _RENDER_SEED, _N = 424242, 9_000_000, 300


@pytest.fixture(scope="module")
def fresh_renders() -> tuple[list[SceneSpec], np.ndarray, np.ndarray]:
    specs = sample_specs(_N, seed=_SPEC_SEED, clutter_range=(0, 14))
    rendered = [render(spec, _RENDER_SEED + i) for i, spec in enumerate(specs)]
    return specs, np.stack([r[0] for r in rendered]), np.stack([r[1] for r in rendered])


def _degrade(images: np.ndarray, seed: int) -> np.ndarray:
    """Blur (sigma 1.2) and pixel noise (std 6): about how soft the toy model's samples are."""
    rng = np.random.default_rng(seed)
    out = [cv2.GaussianBlur(im.astype(np.float32), (0, 0), 1.2) for im in images]
    noisy = np.stack(out) + rng.normal(0, 6, size=images.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def test_judge_is_at_least_98_percent_right_on_fresh_renders(fresh_renders) -> None:
    specs, images, masks = fresh_renders
    judged = judge_images(images)
    scores = label_accuracy(judged, specs)
    assert min(scores.values()) >= 0.98, scores
    assert mean_iou([j.subject_mask for j in judged], list(masks)) >= 0.97


def test_judge_stays_98_percent_right_on_blurred_noisy_renders(fresh_renders) -> None:
    specs, images, masks = fresh_renders
    judged = judge_images(_degrade(images, seed=1))
    scores = label_accuracy(judged, specs)
    assert min(scores.values()) >= 0.98, scores
    assert mean_iou([j.subject_mask for j in judged], list(masks)) >= 0.9


def test_judge_reports_missing_subject_and_bad_input() -> None:
    image, _ = render(SceneSpec("red", "circle", "snow", size=0.05), seed=0)
    # Paint the tiny subject over with the snow colour: nothing left to find.
    image[:] = np.median(image.reshape(-1, 3), axis=0).astype(np.uint8)
    judged = judge_image(image)
    assert judged.color == judged.shape == NOT_FOUND
    assert judged.background == "snow" and not judged.subject_mask.any()
    with pytest.raises(ValueError, match="float32"):
        judge_image(image.astype(np.float32))


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_rule_on_exact_masks(shape: str) -> None:
    for size in (0.12, 0.2, 0.3):
        assert classify_shape(shape_mask(shape, (0.5, 0.5), size, 64)) == shape


def test_shape_rule_reads_rounded_squares_and_ragged_circles() -> None:
    """The toy VAE rounds a square's corners and roughens a circle's rim; the corner rule still
    tells them apart."""
    square = shape_mask("square", (0.5, 0.5), 0.25, 64)
    disk = np.hypot(*np.mgrid[-4:5, -4:5]) <= 4.0  # radius 4 px on a 27 px side
    rounded = ndimage.binary_opening(square, structure=disk)
    assert rounded.sum() < square.sum()  # the corners really are cut
    assert 0.2 < corner_fill(bounding_box_crop(rounded), 0.25) < 1.0
    assert classify_shape(rounded) == "square"
    circle = shape_mask("circle", (0.5, 0.5), 0.25, 64)
    ragged = circle | ndimage.binary_dilation(circle, iterations=1) & (np.arange(64)[None] % 5 == 0)
    assert classify_shape(ragged) == "circle"
