"""The one room for pixels: conversions, the record digest, input modes and the labelled grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pnpsam.imageio import (
    as_rgb_image,
    check_rgb_float,
    check_rgb_uint8,
    float_to_uint8,
    from_float_array,
    image_digest,
    labelled_grid,
    to_float_array,
    to_uint8_array,
)


def _pixels(height: int = 6, width: int = 10) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_uint8_and_float_round_trip_exactly() -> None:
    pixels = _pixels()
    floats = to_float_array(Image.fromarray(pixels))
    assert floats.dtype == np.float32 and floats.shape == (6, 10, 3)
    assert np.array_equal(floats, pixels / np.float32(255.0))
    back = from_float_array(floats)
    assert back.mode == "RGB" and np.array_equal(np.asarray(back), pixels)
    assert np.array_equal(to_uint8_array(floats), pixels)
    assert to_uint8_array(pixels) is pixels  # already the layout: no copy
    # a tensor is 3xHxW, a greyscale array is repeated to three channels
    chw = torch.from_numpy(floats).permute(2, 0, 1)
    assert np.array_equal(to_float_array(chw), floats)
    assert np.array_equal(to_float_array(pixels[..., 0])[..., 2], floats[..., 0])
    # out of range: quantising clips, converting refuses
    assert float_to_uint8(np.array([-0.2, 0.5, 1.3])).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\], got range \[-0.5"):
        to_float_array(floats - 0.5)
    with pytest.raises(ValueError, match=r"3xHxW"):
        to_float_array(chw[:2])
    assert from_float_array(floats[..., 0]).mode == "L"


def test_digest_keeps_the_record_format() -> None:
    image = Image.fromarray(_pixels())
    old = hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()
    assert image_digest(image) == old
    # pinned: records written by earlier versions carry exactly this value for these pixels
    flat = Image.new("RGB", (4, 2), (10, 20, 30))
    assert image_digest(flat) == hashlib.sha256(b"(4, 2)" + bytes([10, 20, 30] * 8)).hexdigest()
    assert image_digest(np.asarray(image)) == old  # an array digests like its PIL image
    # the size is part of the digest: same bytes, other shape -> other digest
    assert image_digest(_pixels().reshape(10, 6, 3)) != old
    with pytest.raises(ValueError, match="uint8"):
        image_digest(np.zeros((4, 4, 3), np.float32))


def test_every_input_mode_becomes_rgb(tmp_path: Path) -> None:
    clear_red = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert as_rgb_image(clear_red).getpixel((1, 1)) == (255, 255, 255)  # alpha on white
    half_grey = Image.new("LA", (8, 8), (0, 128))
    assert as_rgb_image(half_grey).getpixel((1, 1)) == (127, 127, 127)
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    assert as_rgb_image(palette).getpixel((1, 1)) == (0, 200, 0)
    palette.info["transparency"] = 1
    assert as_rgb_image(palette).getpixel((1, 1)) == (255, 255, 255)
    assert as_rgb_image(Image.new("L", (8, 8), 80)).getpixel((1, 1)) == (80, 80, 80)
    assert as_rgb_image(np.full((8, 8), 7, np.uint8)).getpixel((1, 1)) == (7, 7, 7)
    with pytest.raises(ValueError, match="uint8"):
        as_rgb_image(np.zeros((8, 8, 3), np.float32))
    # a path is read upright: EXIF orientation 3 = shown rotated by 180 degrees
    pixels = np.zeros((16, 24, 3), np.uint8)
    pixels[:8] = 255  # top half white as stored
    stored = Image.fromarray(pixels)
    exif = stored.getexif()
    exif[0x0112] = 3
    stored.save(tmp_path / "upside_down.png", exif=exif)
    upright = np.asarray(as_rgb_image(tmp_path / "upside_down.png"))
    assert upright.shape == (16, 24, 3) and upright[8:].min() == 255 and upright[:8].max() == 0


def test_layout_checks_name_the_input() -> None:
    assert check_rgb_uint8(_pixels()).shape == (6, 10, 3)
    with pytest.raises(ValueError, match=r"source must be HxWx3 uint8 RGB, got shape \(6, 10\)"):
        check_rgb_uint8(_pixels()[..., 0], "source")
    assert check_rgb_float(np.ones((2, 2, 3), np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match=r"output values must lie in \[0, 1\]"):
        check_rgb_float(np.full((2, 2, 3), 2.0), "output")


def test_labelled_grid_places_cells_and_labels() -> None:
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    checker = Image.fromarray(np.kron([[0, 255], [255, 0]], np.ones((2, 2))).astype(np.uint8))
    grid = labelled_grid(
        [[red, None], [checker, red]],
        ["source", "method:with:a:long:name"],
        ["item one", "a\n-> b"],
        cell=66,
        label_width=100,
        header=30,
    )
    assert grid.size == (100 + 2 * 66, 30 + 2 * 66)
    pixels = np.asarray(grid)
    cell = pixels[30 : 30 + 66, 100 : 100 + 66]
    assert (cell[1:65, 1:65] == (255, 0, 0)).all() and (cell[0] == 255).all()  # white gutter
    assert (pixels[30 + 10, 100 + 66 + 10] == (200, 200, 200)).all()  # None = grey cell
    # a 4x4 checkerboard enlarged with NEAREST to 64x64: four flat 32x32 blocks
    small = pixels[30 + 66 + 1 : 30 + 66 + 65, 100 + 1 : 100 + 65, 0]
    assert small[:32, :32].max() == 0 and small[:32, 32:].min() == 255
    # labels are dark ink in the header above each column and in the margin left of each row
    assert pixels[:30, 100 : 100 + 66].min() < 100 and pixels[:30, 100 + 66 :].min() < 100
    assert pixels[30 : 30 + 66, :100].min() < 100 and pixels[30 + 66 :, :100].min() < 100
    with pytest.raises(ValueError):
        labelled_grid([[red]], ["source"], ["one", "two"])
