"""The one room for pixels: reading photos, converting between PIL, NumPy and torch layouts,
resizing to the model's input, the image digest, labelled grids and atomic writes.

Images are read with EXIF orientation applied, alpha composited on white and greyscale made RGB;
results are written atomically (temporary file, then rename) so a crash never leaves half a PNG.
Layouts: PIL images are RGB; "uint8" arrays are ``HxWx3 uint8`` in [0, 255]; "float" arrays are
``HxWx3 float32`` in [0, 1]; tensors are ``3xHxW`` float in [0, 1] (the model's ``(1, 3, H, W)``
input in [-1, 1] comes from :func:`pil_to_tensor_range`). This module imports no other pnpsam
module at run time, so every tier may use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeAlias

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from pnpsam.errors import InputError


class Resizing(Protocol):
    """How to bring an image to the model's size (``pnpsam.config.PreprocessConfig`` is one).

    A protocol, not the config class: config imports masks, which import this module.
    """

    @property
    def resize_mode(self) -> str: ...  # "resize" (aspect kept) or "center-crop"

    @property
    def resample(self) -> str: ...  # a key of RESAMPLE


ImageInput: TypeAlias = str | os.PathLike[str] | Image.Image | np.ndarray
"""What the editor reads: a path, a PIL image (any mode) or an ``HxW``/``HxWxC`` uint8 array."""
PixelInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor
"""Pixels in memory, as the metrics take them: PIL (any mode), uint8 or float ``HxWx3``/``HxW``
arrays, or a ``3xHxW`` float tensor in [0, 1]."""

MIN_INPUT_SIDE = 16  # pixels; anything smaller carries no structure worth keeping
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
MAX_ASPECT_SIDES = 4  # the long side may be at most this many times the target size


class ImageInputError(InputError):
    """An input image is missing, unreadable, not an image, or of an unusable size."""


def load_image(path: str | os.PathLike[str], max_pixels: int = 64_000_000) -> Image.Image:
    """Read any PIL-readable file as an RGB image, upright (EXIF), alpha flattened on white."""
    path = Path(path)
    if not path.is_file():
        raise ImageInputError(f"image {str(path)!r} does not exist or is not a file")
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ImageInputError(
                    f"image {str(path)!r} is {width}x{height} = {width * height / 1e6:.0f} MP, "
                    f"over the {max_pixels / 1e6:.0f} MP limit (max_input_pixels)"
                )
            opened.load()
            image = opened.copy()
    except ImageInputError:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ImageInputError(f"cannot read {str(path)!r} as an image: {err}") from err
    try:
        return to_rgb(ImageOps.exif_transpose(image) or image)
    except ImageInputError as err:  # a bit depth or range that cannot be scaled
        raise ImageInputError(f"image {str(path)!r}: {err}") from err


# Single-channel modes deeper than 8 bits, whose convert("RGB") clips instead of scaling: a
# 16-bit greyscale PNG came out almost white, a float TIFF black.
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """A 16-bit or 32-bit integer or float greyscale image as 8-bit "L", scaled by its range.

    Integers: 0-65535 (16 bits) -> 0-255; a 32-bit integer image with values outside 0-65535
    is refused. Floats: 0.0-1.0 -> 0-255; NaN/inf or values outside [0, 1] are refused, naming
    the range found (there is no agreed white for them).
    """
    pixels = np.asarray(image)
    if image.mode == "F":
        if not np.isfinite(pixels).all():
            raise ImageInputError("float image holds NaN or infinite values")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 1.0:
            raise ImageInputError(
                f"float image has values in [{low:g}, {high:g}]; expected [0, 1] "
                "(convert it to 8 or 16 bits first)"
            )
        scaled = pixels * 255.0
    else:
        low, high = int(pixels.min()), int(pixels.max())
        if low < 0 or high > 65535:
            raise ImageInputError(
                f"{image.mode} image has values in [{low}, {high}]; expected 16-bit 0-65535"
            )
        scaled = pixels.astype(np.float64) / 257.0
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``: transparency composited on white, palette/greyscale expanded,
    16-bit and float greyscale scaled by their range (see :func:`_high_depth_to_l`)."""
    if image.mode in HIGH_DEPTH_MODES:
        image = _high_depth_to_l(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def as_rgb_image(image: ImageInput, max_pixels: int = 64_000_000) -> Image.Image:
    """An RGB PIL image from a path (read by :func:`load_image`), a PIL image (any mode, via
    :func:`to_rgb`) or an ``HxW`` / ``HxWxC`` uint8 array; other arrays raise ``ValueError``."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        layout = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        if image.dtype != np.uint8 or not layout:
            raise ImageInputError(
                f"array images must be HxW, HxWx3 or HxWx4 uint8; got {image.dtype} {image.shape}"
            )
        return to_rgb(Image.fromarray(image))
    if not isinstance(image, str | os.PathLike):
        raise ImageInputError(
            f"image must be a file path, a PIL image or a uint8 array; got {type(image).__name__}"
        )
    return load_image(image, max_pixels)


def check_rgb_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check that ``image`` is ``HxWx3 uint8`` RGB and return it as an array (no copy)."""
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ImageInputError(
            f"{name} must be HxWx3 uint8 RGB, got shape {pixels.shape} {pixels.dtype}"
        )
    return pixels


def check_rgb_float(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check that ``image`` is ``HxWx3`` with values in [0, 1]; return a float32 copy."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must be HxWx3 RGB, got shape {array.shape}")
    out = array.astype(np.float32)
    if out.size and (out.min() < 0.0 or out.max() > 1.0):
        raise ValueError(
            f"{name} values must lie in [0, 1], got range [{out.min():.3g}, {out.max():.3g}]"
        )
    return out


def to_float_array(image: PixelInput) -> np.ndarray:
    """``HxWx3 float32`` in [0, 1] from any :data:`PixelInput` (uint8 is divided by 255;
    greyscale is repeated to three channels; float values outside [0, 1] raise ``ValueError``)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image tensor must be 3xHxW, got shape {tuple(image.shape)}")
        array = image.detach().float().cpu().permute(1, 2, 0).numpy()
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"image array must be HxWx3 or HxW, got shape {array.shape}")
        if array.dtype == np.uint8:
            return array.astype(np.float32) / 255.0
    return check_rgb_float(array, "float image")


def float_to_uint8(array: np.ndarray) -> np.ndarray:
    """Quantise floats in [0, 1] (clipped) to uint8 in [0, 255], rounding to nearest; any shape."""
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def to_uint8_array(image: PixelInput) -> np.ndarray:
    """``HxWx3 uint8`` from any :data:`PixelInput` (a uint8 ``HxWxC`` array is returned as is)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return image
    return float_to_uint8(to_float_array(image))


def from_float_array(array: np.ndarray) -> Image.Image:
    """PIL image from an ``HxWx3`` (RGB) or ``HxW`` (mode ``L``) float array in [0, 1]."""
    return Image.fromarray(float_to_uint8(array))


def image_digest(image: Image.Image | np.ndarray) -> str:
    """SHA-256 hex digest of an image's size and raw pixels: ``sha256(f"{(W, H)}" + bytes)``.

    The format of the ``image_sha256`` in records; it must never change, so that old records
    still name the same pixels. A uint8 ``HxW``/``HxWx3`` array digests like the PIL image
    ``Image.fromarray`` makes of it.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"can only digest uint8 HxW or HxWxC arrays; got {image.dtype}")
        size: tuple[int, int] = (image.shape[1], image.shape[0])
        data = np.ascontiguousarray(image).tobytes()
    else:
        size, data = image.size, image.tobytes()
    digest = hashlib.sha256(f"{size}".encode())
    digest.update(data)
    return digest.hexdigest()


def target_size(
    width: int, height: int, cfg: Resizing, size: int, multiple: int
) -> tuple[int, int]:
    """Output (width, height) for an input of ``width`` x ``height``.

    ``resize``: short side to ``size``, aspect kept, each side rounded to the nearest multiple
    of ``multiple`` (what the VAE and UNet need). ``center-crop``: ``size`` x ``size``.
    """
    if min(width, height) < MIN_INPUT_SIDE:
        raise ImageInputError(
            f"image is {width}x{height}; the short side must be at least {MIN_INPUT_SIDE} px"
        )
    if size % multiple:
        raise ImageInputError(f"size {size} must be a multiple of {multiple} for this model")
    if cfg.resize_mode == "center-crop":
        return size, size
    scale = size / min(width, height)
    new_w = max(multiple, round(width * scale / multiple) * multiple)
    new_h = max(multiple, round(height * scale / multiple) * multiple)
    if max(new_w, new_h) > MAX_ASPECT_SIDES * size:
        raise ImageInputError(
            f"image {width}x{height} would become {new_w}x{new_h}: aspect ratio over "
            f"{MAX_ASPECT_SIDES}:1; crop it or use resize_mode center-crop"
        )
    return new_w, new_h


def prepare_image(image: Image.Image, cfg: Resizing, size: int, multiple: int) -> Image.Image:
    """Resize (or center-crop and resize) an image to the model's input size (``cfg.resample``)."""
    width, height = target_size(image.width, image.height, cfg, size, multiple)
    resample = RESAMPLE[cfg.resample]
    if cfg.resize_mode == "center-crop":
        return ImageOps.fit(image, (width, height), resample)
    return image.resize((width, height), resample)


def pil_to_tensor_range(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8 RGB -> (1, 3, H, W) float32 in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return array.transpose(2, 0, 1)[None]


def current_umask() -> int:
    """The process umask, read without changing it where the system shows it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (the only portable way to read it)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` then rename to ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600; the file gets the mode any new file would (0666 less the umask)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def labelled_grid(
    rows: Sequence[Sequence[Image.Image | None]],
    column_labels: Sequence[str],
    row_labels: Sequence[str],
    cell: int = 128,
    label_width: int = 120,
    header: int = 40,
) -> Image.Image:
    """A white RGB sheet of ``label_width + cell * columns`` x ``header + cell * rows`` pixels.

    Each image is scaled to fit a ``cell - 2`` square, centred in its cell (``None`` = a grey
    cell). Column labels sit above, wrapped (at ``:`` where possible) to the header's lines; row
    labels at the left, vertically centred, each ``\n``-separated line wrapped to the width.
    """
    font = ImageFont.load_default(size=11)
    line_h, char_w = 13, 6  # of that font, to wrap text to the space it has
    size = (label_width + cell * len(column_labels), header + cell * len(rows))
    grid = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(grid)
    header_lines = max(1, (header - 4) // line_h)
    for c, title in enumerate(column_labels):
        lines = textwrap.wrap(title.replace(":", ": "), width=cell // char_w)[:header_lines]
        draw.multiline_text((label_width + c * cell + 3, 4), "\n".join(lines), "black", font)
    for r, (title, images) in enumerate(zip(row_labels, rows, strict=True)):
        top = header + r * cell
        lines = [
            wrapped
            for line in title.splitlines()
            for wrapped in textwrap.wrap(line, width=max(1, label_width // char_w - 1))
        ][: cell // line_h]
        y = top + (cell - line_h * len(lines)) // 2
        draw.multiline_text((3, y), "\n".join(lines), "black", font, spacing=2)
        for c, image in enumerate(images):
            left = label_width + c * cell
            if image is None:
                draw.rectangle([left, top, left + cell - 1, top + cell - 1], fill=(200, 200, 200))
                continue
            # Small model outputs are enlarged with NEAREST so their pixels stay visible.
            resample = Image.Resampling.NEAREST if image.width < cell else Image.Resampling.LANCZOS
            thumb = ImageOps.contain(image.convert("RGB"), (cell - 2, cell - 2), resample)
            grid.paste(thumb, (left + (cell - thumb.width) // 2, top + (cell - thumb.height) // 2))
    return grid


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_json(data: dict[str, Any], path: Path) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))
