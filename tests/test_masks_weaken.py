"""The report's scheme 3, exactly, on constructed images: weakening, each restore, darkness."""

from __future__ import annotations

import numpy as np
import pytest
from masks_fixtures import disc_mask

from pnpsam.masks import (
    background_gain,
    luminance,
    measure_darkness,
    paste_background,
    restore_brightness,
    weaken_background,
)

H, W = 48, 64


@pytest.fixture()
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A bright orange disc (subject) on a striped blue-grey background, and its mask."""
    mask = disc_mask(H, W, 32, 24, 12)
    image = np.empty((H, W, 3), np.float32)
    stripes = np.where((np.arange(W) // 4) % 2 == 0, 0.3, 0.6).astype(np.float32)
    image[...] = stripes[None, :, None] * np.array([0.8, 0.9, 1.0], np.float32)
    image[mask > 0] = [0.9, 0.6, 0.2]
    return image, mask


def test_keep_remove_dim_exactly(scene: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = scene
    subject, background = mask > 0, mask == 0
    assert np.array_equal(weaken_background(image, mask, "keep"), image)
    removed = weaken_background(image, mask, "remove")
    assert np.array_equal(removed[subject], image[subject])
    assert not removed[background].any()
    dimmed = weaken_background(image, mask, "dim", 0.5)
    assert np.array_equal(dimmed[subject], image[subject])
    assert np.allclose(dimmed[background], 0.5 * image[background], atol=1e-7)
    assert np.array_equal(weaken_background(image, mask, "dim", 1.0), image)


def test_soft_mask_blends_linearly() -> None:
    mask = np.array([[0.0, 0.5, 1.0]], np.float32)
    assert background_gain(mask, "dim", 0.4) == pytest.approx(np.array([[0.4, 0.7, 1.0]]))
    assert background_gain(mask, "remove") == pytest.approx(mask)
    image = np.full((1, 3, 3), 0.8, np.float32)
    assert weaken_background(image, mask, "dim", 0.4)[0, :, 0] == pytest.approx([0.32, 0.56, 0.8])


def test_bad_weakening_inputs() -> None:
    image = np.zeros((4, 4, 3), np.float32)
    mask = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"got 0\.0"):
        weaken_background(image, mask, "dim", 0.0)
    with pytest.raises(ValueError, match="'smudge'"):
        weaken_background(image, mask, "smudge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differs"):
        weaken_background(image, mask[:2], "dim")
    with pytest.raises(ValueError, match="range"):
        weaken_background(image + 2.0, mask, "dim")


def test_restores_of_an_ideal_reconstruction(scene: tuple[np.ndarray, np.ndarray]) -> None:
    """If the edit returned the dimmed input unchanged, which restore gives the source back?"""
    image, mask = scene
    subject, background = mask > 0, mask == 0
    output = weaken_background(image, mask, "dim", 0.5)

    # The report's global x2: the background comes back, the subject is over-brightened.
    global_fix = restore_brightness(output, mask, "global", 0.5)
    assert np.allclose(global_fix[background], image[background], atol=1e-6)
    assert np.allclose(global_fix[subject], np.minimum(2 * image[subject], 1.0), atol=1e-6)

    # Masked x2: the exact inverse of dim, everywhere.
    assert np.allclose(restore_brightness(output, mask, "masked", 0.5), image, atol=1e-6)

    # Luminance matching: background luma statistics of the source, subject untouched,
    # and here (a pure scaling of the source) the source background itself.
    matched = restore_brightness(output, mask, "luminance", 0.5, source=image)
    assert np.array_equal(matched[subject], output[subject])
    assert np.allclose(matched[background], image[background], atol=1e-5)

    assert np.array_equal(restore_brightness(output, mask, "none"), output)


def test_darkness_problem_and_what_each_restore_does(scene: tuple[np.ndarray, np.ndarray]) -> None:
    image, mask = scene
    output = weaken_background(image, mask, "dim", 0.5)
    dark = measure_darkness(output, image, mask)
    assert dark.background_ratio == pytest.approx(0.5, abs=1e-5)
    assert dark.subject_ratio == pytest.approx(1.0, abs=1e-6)
    assert 0.5 < dark.ratio < 0.7  # the whole image comes out darker, as the report saw

    fixed = measure_darkness(restore_brightness(output, mask, "global", 0.5), image, mask)
    assert fixed.background_ratio == pytest.approx(1.0, abs=1e-5)
    assert fixed.subject_ratio > 1.3  # global x2 burns the subject (clipped at 1)
    for mode in ("masked", "luminance"):
        stats = measure_darkness(
            restore_brightness(output, mask, mode, 0.5, source=image), image, mask
        )
        assert stats.ratio == pytest.approx(1.0, abs=1e-4)
        assert stats.subject_ratio == pytest.approx(1.0, abs=1e-6)
    assert set(dark.as_dict()) >= {"ratio", "background_ratio", "subject_ratio", "source_mean"}


def test_luminance_restore_matches_statistics_and_keeps_hue(
    scene: tuple[np.ndarray, np.ndarray],
) -> None:
    """An edited output whose background is new (green, dark, low contrast) gets the source
    background's luma mean and std, with each pixel's colour ratios unchanged."""
    image, mask = scene
    background = mask == 0
    rng = np.random.default_rng(0)
    output = image.copy()
    shade = rng.uniform(0.1, 0.2, size=(H, W, 1)).astype(np.float32)
    output[background] = (shade * np.array([0.3, 1.0, 0.5], np.float32))[background]
    matched = restore_brightness(output, mask, "luminance", source=image)
    y_src, y_out = luminance(image)[background], luminance(matched)[background]
    assert y_out.mean() == pytest.approx(y_src.mean(), abs=2e-3)
    assert y_out.std() == pytest.approx(y_src.std(), abs=2e-3)
    ratio = matched[background] / output[background]
    assert np.allclose(ratio, ratio[:, :1], rtol=1e-4)  # one gain per pixel: hue kept
    assert np.array_equal(matched[~background], output[~background])


def test_luminance_restore_needs_source_and_background(
    scene: tuple[np.ndarray, np.ndarray],
) -> None:
    image, mask = scene
    with pytest.raises(ValueError, match="needs the source"):
        restore_brightness(image, mask, "luminance")
    with pytest.raises(ValueError, match="background is empty"):
        restore_brightness(image, np.ones_like(mask), "luminance", source=image)


def test_paste_background_keeps_the_photo_outside_and_the_output_inside(
    scene: tuple[np.ndarray, np.ndarray],
) -> None:
    """Background intent "keep" by pixels: outside the subject grown by the edge and its
    feather, the photo's own pixels; on the subject (eroded by the same), the output's; the
    ramp between lies on the background side of the subject's edge."""
    from scipy.ndimage import binary_dilation, binary_erosion

    photo, mask = scene
    output = np.zeros_like(photo)
    output[...] = [0.1, 0.8, 0.3]  # the edit: a green everything
    pasted = paste_background(output, photo, mask, edge_px=2)
    subject = mask > 0.5
    # grown 2 px, then OpenCV's float blur kernel for sigma 1.4 px reaches 6 px (square)
    far = ~binary_dilation(subject, np.ones((3, 3), bool), iterations=2 + 6)
    assert np.allclose(pasted[far], photo[far], atol=1e-6)
    share = (pasted - photo)[..., 1] / (output - photo)[..., 1]  # the output's share
    assert share[subject].min() >= 0.85  # grown: the subject's edge is about 90% the output's
    inner = binary_erosion(subject, np.ones((3, 3), bool), iterations=6 - 2)  # the kernel
    assert np.allclose(pasted[inner], output[inner], atol=1e-4)
    # the default edge is 1/64 of the shorter side: 1 px here
    ring = binary_dilation(subject, iterations=1) & ~subject
    default = paste_background(output, photo, mask)
    assert np.abs(default[ring] - output[ring]).mean() < np.abs(photo[ring] - output[ring]).mean()
    with pytest.raises(ValueError, match="source"):
        paste_background(output, photo[:10], mask)
