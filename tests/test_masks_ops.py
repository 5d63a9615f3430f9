"""Mask tools on constructed masks: grow/shrink, feather, holes, resize, coverage, overlay."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from masks_fixtures import disc_mask

from pnpsam.masks import (
    EmptyMaskWarning,
    MaskCoverageError,
    check_mask_coverage,
    feather_mask,
    fill_mask_holes,
    grow_mask,
    invert_mask,
    largest_component,
    overlay_mask,
    resize_mask,
)
from pnpsam.masks.ops import as_mask, mask_from_image_array


def test_as_mask_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match=r"HxW, got shape \(4, 4, 3\)"):
        as_mask(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"range \[2.0, 2.0\]"):
        as_mask(np.full((4, 4), 2.0))
    with pytest.raises(ValueError, match="non-finite"):
        as_mask(np.full((4, 4), np.nan))
    assert as_mask(np.ones((2, 3), bool)).dtype == np.float32


@pytest.mark.parametrize("px", [3, 7])
def test_grow_and_shrink_move_a_disc_edge_by_px(px: int) -> None:
    disc = disc_mask(81, 101, 50, 40, 20)
    grown = grow_mask(disc, px)
    shrunk = grow_mask(disc, -px)
    # A disc dilated/eroded by a disc of radius px is a disc of radius 20 +/- px.
    assert np.abs(grown - disc_mask(81, 101, 50, 40, 20 + px)).sum() <= 8 * px
    assert np.abs(shrunk - disc_mask(81, 101, 50, 40, 20 - px)).sum() <= 8 * px
    assert np.array_equal(grow_mask(disc, 0), disc)


def test_grow_keeps_a_subject_touching_the_border() -> None:
    mask = np.zeros((20, 20), np.float32)
    mask[:, :5] = 1.0
    assert grow_mask(mask, -2)[:, 0].min() == 1.0  # no erosion from outside the frame
    assert grow_mask(mask, -2)[:, 4].max() == 0.0


def test_feather_makes_a_symmetric_ramp_of_about_two_px() -> None:
    mask = np.zeros((40, 100), np.float32)
    mask[:, 50:] = 1.0
    soft = feather_mask(mask, 10)
    row = soft[20]
    assert 0.45 < (row[49] + row[50]) / 2 < 0.55  # the edge stays where it was
    assert np.allclose(row[:50], 1.0 - row[99:49:-1], atol=1e-5)  # symmetric about the edge
    ramp = np.flatnonzero((row > 0.02) & (row < 0.98))
    assert 16 <= ramp.size <= 24  # 2%..98% over ~2 * feather_px
    assert np.all(np.diff(row) >= -1e-6)
    assert np.array_equal(feather_mask(mask, 0), mask)
    with pytest.raises(ValueError, match="-1"):
        feather_mask(mask, -1)


def test_fill_holes_fills_enclosed_gaps_only() -> None:
    ring = disc_mask(60, 60, 30, 30, 20) - disc_mask(60, 60, 30, 30, 8)
    notch = np.zeros((60, 60), np.float32)
    notch[:, :10] = 1.0
    notch[20:40, 3:7] = 0.0  # a slot inside a strip on the border: enclosed, so a hole
    bay = np.zeros((60, 60), np.float32)
    bay[10:50, 10:50] = 1.0
    bay[25:35, 0:30] = 0.0  # a cut reaching the border: not a hole
    assert np.array_equal(fill_mask_holes(ring), disc_mask(60, 60, 30, 30, 20))
    assert fill_mask_holes(notch)[20:40, 3:7].min() == 1.0
    assert np.array_equal(fill_mask_holes(bay), bay)


def test_fill_holes_keeps_soft_values() -> None:
    mask = np.full((9, 9), 0.3, np.float32)
    mask[2:7, 2:7] = 1.0
    mask[4, 4] = 0.0
    filled = fill_mask_holes(mask)
    assert filled[4, 4] == 1.0 and filled[0, 0] == pytest.approx(0.3)


def test_invert() -> None:
    mask = np.array([[0.0, 0.25], [1.0, 0.5]], np.float32)
    assert np.array_equal(invert_mask(mask), 1.0 - mask)


def test_largest_component_keeps_the_biggest_blob() -> None:
    big = disc_mask(50, 80, 20, 25, 12)
    small = disc_mask(50, 80, 65, 25, 5)
    kept = largest_component(big + small)
    assert np.array_equal(kept, big)


def test_resize_mask_non_square_area_and_bilinear() -> None:
    mask = np.zeros((64, 96), np.float32)
    mask[:32, :48] = 1.0  # top-left quarter
    small = resize_mask(mask, 8, 12)  # a 12x8 token grid: one token = 8x8 pixels
    assert small.shape == (8, 12)
    assert np.array_equal(small, np.kron([[1.0, 0.0], [0.0, 0.0]], np.ones((4, 6))))
    offset = np.zeros((64, 96), np.float32)
    offset[:, :4] = 1.0  # covers half of the first token column
    assert resize_mask(offset, 8, 12)[:, 0] == pytest.approx(0.5)
    big = resize_mask(small, 64, 96)
    assert big.shape == (64, 96) and big.min() >= 0.0 and big.max() <= 1.0
    assert big[10, 10] == 1.0 and big[60, 90] == 0.0
    with pytest.raises(ValueError, match="0x12"):
        resize_mask(mask, 0, 12)


def test_coverage_empty_warns_and_all_subject_raises() -> None:
    assert check_mask_coverage(disc_mask(50, 50, 25, 25, 10))
    with pytest.warns(EmptyMaskWarning, match="plain PnP"):
        assert not check_mask_coverage(np.zeros((50, 50), np.float32))
    with pytest.raises(MaskCoverageError, match=r"100\.0%"):
        check_mask_coverage(np.ones((50, 50), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nearly_empty = np.zeros((100, 100), np.float32)
        nearly_empty[0, :20] = 1.0  # 0.2% of the image
        assert check_mask_coverage(nearly_empty)


def test_mask_from_image_array_kinds() -> None:
    grey = np.array([[0, 128, 255]], np.uint8)
    assert mask_from_image_array(grey) == pytest.approx(np.array([[0.0, 128 / 255, 1.0]]))
    labels = np.array([[0, 1, 1]], np.uint8)  # a 0/1 label image
    assert np.array_equal(mask_from_image_array(labels), [[0.0, 1.0, 1.0]])
    sixteen = np.array([[0, 65535]], np.uint16)
    assert np.array_equal(mask_from_image_array(sixteen), [[0.0, 1.0]])
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[..., 3] = [0, 255, 255]  # alpha is the mask, whatever the colour
    assert np.array_equal(mask_from_image_array(rgba), [[0.0, 1.0, 1.0]])
    two_colour = np.array([[[200, 0, 0], [0, 0, 40], [200, 0, 0]]], np.uint8)
    assert np.array_equal(mask_from_image_array(two_colour), [[1.0, 0.0, 1.0]])
    grey_rgb = np.repeat(grey[..., None], 3, axis=2)
    assert np.array_equal(mask_from_image_array(grey_rgb), mask_from_image_array(grey))


def test_mask_from_image_array_rejects_a_photo() -> None:
    from skimage import data

    with pytest.raises(ValueError, match="distinct colours"):
        mask_from_image_array(data.chelsea())


def test_overlay_tints_subject_only_and_marks_prompts() -> None:
    image = np.full((60, 80, 3), 100, np.uint8)
    mask = np.zeros((60, 80), np.float32)
    mask[20:40, 20:60] = 1.0
    out = overlay_mask(image, mask, color=(0, 0, 255), alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out[30, 40], [50, 50, 178])  # inside: half tint
    assert np.array_equal(out[5, 5], [100, 100, 100])  # background untouched
    assert np.array_equal(out[20, 40], [0, 0, 255])  # outline
    marked = overlay_mask(image, mask, points=[(40, 30)], neg_points=[(5, 5)], box=(10, 10, 70, 50))
    assert np.array_equal(marked[30, 40], [0, 200, 0])
    assert np.array_equal(marked[5, 5], [220, 0, 0])
    assert np.array_equal(marked[10, 40], [255, 215, 0])
    with pytest.raises(ValueError, match="differs"):
        overlay_mask(image, mask[:, :10])
