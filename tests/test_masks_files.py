"""Loading mask files of every common kind, any size, and rejecting what is not a mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from masks_fixtures import iou
from PIL import Image

from pnpsam.masks import MaskFileError, load_mask_file


def _rect(height: int, width: int) -> np.ndarray:
    """A mask whose subject is the middle half of the image in both directions."""
    mask = np.zeros((height, width), bool)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    return mask


@pytest.mark.parametrize("mode", ["1", "L", "RGB", "RGBA", "P", "I;16"])
def test_every_kind_of_mask_png_loads_resized(tmp_path: Path, mode: str) -> None:
    rect = _rect(40, 60)  # saved at a different size and aspect than the image
    if mode == "1":
        picture = Image.fromarray(rect)
    elif mode == "L":
        picture = Image.fromarray(rect.astype(np.uint8) * 255)
    elif mode == "RGB":  # white-on-black saved as colour
        picture = Image.fromarray(np.repeat(rect[..., None], 3, axis=2).astype(np.uint8) * 255)
    elif mode == "RGBA":  # a cut-out: colour noise, the alpha channel is the mask
        rgba = np.random.default_rng(0).integers(0, 255, (40, 60, 4), dtype=np.uint8)
        rgba[..., 3] = rect * 255
        picture = Image.fromarray(rgba)
    elif mode == "P":
        picture = Image.fromarray(rect.astype(np.uint8)).convert("P")
        picture.putpalette([0, 0, 0, 255, 0, 0])  # index 1 = red = subject
    else:
        picture = Image.fromarray(rect.astype(np.uint16) * 65535)
    path = tmp_path / f"mask_{mode.replace(';', '')}.png"
    picture.save(path)
    mask = load_mask_file(path, 90, 120)
    assert mask.shape == (90, 120) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert iou(mask, _rect(90, 120)) > 0.95


def test_soft_greyscale_values_survive(tmp_path: Path) -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (4, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    mask = load_mask_file(tmp_path / "ramp.png", 4, 256)
    assert mask == pytest.approx(ramp / 255.0)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        load_mask_file(tmp_path / "nope.png", 10, 10)


def test_a_text_file_is_not_a_mask(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(MaskFileError, match="not a readable image"):
        load_mask_file(path, 10, 10)


def test_a_colour_photo_is_rejected(tmp_path: Path) -> None:
    from skimage import data

    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    with pytest.raises(MaskFileError, match=r"coffee\.jpg.*distinct colours"):
        load_mask_file(tmp_path / "coffee.jpg", 100, 150)


def test_an_edits_mask_and_overlay_are_encoded_with_edits_names_and_read_back(
    tmp_path: Path,
) -> None:
    from pnpsam.masks import feather_mask
    from pnpsam.outputs import OutputPaths, edit_files

    image = Image.fromarray(np.full((30, 40, 3), 90, np.uint8))
    mask = feather_mask(_rect(30, 40).astype(np.float32), 3)
    paths = OutputPaths.of(tmp_path, "photo.jpg", ["a cat"])
    edited = Image.fromarray(np.full((30, 40, 3), 200, np.uint8))
    files = edit_files(paths, {0: edited}, image, mask)
    assert list(files) == ["photo_00_a-cat.png", "photo_mask.png", "photo_mask_overlay.png"]
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # the grey mask is what --mask reads back (to within 1/255), soft edges kept
    assert np.abs(load_mask_file(paths.mask, 30, 40) - mask).max() <= 0.5 / 255 + 1e-6
    overlay = np.asarray(Image.open(paths.overlay))
    assert overlay.shape == (30, 40, 3)
    inside, outside = overlay[15, 20], overlay[1, 1]
    assert np.array_equal(outside, [90, 90, 90]) and not np.array_equal(inside, outside)
    assert np.array_equal(np.asarray(Image.open(paths.pngs[0])), np.asarray(edited))
    assert list(edit_files(paths, {0: edited}, image, None)) == ["photo_00_a-cat.png"]
    with pytest.raises(ValueError, match="differs"):
        edit_files(paths, {0: edited}, image, mask[:10])
