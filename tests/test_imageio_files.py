"""Image files beyond 8 bits come in scaled by their range; written files follow the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnpsam.imageio import ImageInputError, current_umask, load_image, save_json, save_png


def gradient(height: int = 24, width: int = 32) -> np.ndarray:
    return np.linspace(0.0, 1.0, height * width).reshape(height, width)


def test_16_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = gradient()
    Image.fromarray(np.round(ramp * 65535).astype(np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    pixels = np.asarray(load_image(tmp_path / "g16.png"), dtype=np.float64)
    assert pixels.shape == (24, 32, 3)
    assert np.abs(pixels[..., 0] - ramp * 255).max() <= 1.0  # was 99.6% white


def test_float_tiff_is_scaled_and_out_of_range_floats_refused(tmp_path: Path) -> None:
    Image.fromarray(gradient().astype(np.float32)).save(tmp_path / "f.tif")
    pixels = np.asarray(load_image(tmp_path / "f.tif"), dtype=np.float64)
    assert np.abs(pixels[..., 1] - gradient() * 255).max() <= 1.0  # was black
    Image.fromarray((gradient() * 4 - 1).astype(np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(ImageInputError, match=r"hdr.tif.*values in \[-1, 3\]; expected \[0, 1\]"):
        load_image(tmp_path / "hdr.tif")


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        save_png(Image.new("RGB", (4, 4)), tmp_path / "a.png")
        save_json({"a": 1}, tmp_path / "a.json")
    finally:
        os.umask(old)
    for name in ("a.png", "a.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640  # not mkstemp's 0600
