"""Mask files (file I/O lives here, not in ``ops``): reading a mask the user already has, and
writing one. An edit's mask and overlay are written by :func:`pnpsam.outputs.edit_files`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pnpsam.errors import InputError, UserFileNotFoundError
from pnpsam.imageio import from_float_array
from pnpsam.masks.ops import as_mask, mask_from_image_array, resize_mask


class MaskFileError(InputError):
    """A mask file that cannot be read or is not a usable mask image."""


def load_mask_file(path: str | Path, height: int, width: int) -> np.ndarray:
    """Read any PIL-readable mask image and return it as ``height x width float32`` in [0, 1].

    Accepts greyscale (8/16-bit, soft values kept), 1-bit, palette, and RGB/RGBA images as
    described in :func:`pnpsam.masks.ops.mask_from_image_array` (alpha wins when it varies;
    colour photos are rejected). Any size: resized to the image (area / bilinear).
    Raises ``FileNotFoundError`` for a missing path and :class:`MaskFileError` otherwise.
    """
    file = Path(path)
    if not file.is_file():
        raise UserFileNotFoundError(f"mask file {str(file)!r} does not exist")
    try:
        with Image.open(file) as opened:
            picture = opened.copy()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise MaskFileError(f"mask file {str(file)!r} is not a readable image: {error}") from error
    if picture.mode == "P":
        # Palette images: decode the palette (and its transparency, if any) to real colours.
        picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
    elif picture.mode not in ("1", "L", "LA", "I", "I;16", "F", "RGB", "RGBA"):
        picture = picture.convert("RGB")
    if picture.mode == "LA":
        picture = picture.convert("RGBA")
    try:
        mask = mask_from_image_array(np.array(picture), name=f"mask file {str(file)!r}")
    except ValueError as error:
        raise MaskFileError(str(error)) from error
    return resize_mask(mask, height, width)


def save_mask_png(path: str | Path, mask: np.ndarray) -> Path:
    """Write a mask as an 8-bit greyscale PNG (255 = subject; soft values kept to 1/255).

    :func:`load_mask_file` reads it back (to within 1/255), so a saved mask can be reused
    with ``--mask``.
    """
    file = Path(path)
    from_float_array(as_mask(mask)).save(file)
    return file
