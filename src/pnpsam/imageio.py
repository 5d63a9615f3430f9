"""Reading photos and writing results: the only place the editing path touches files.

Images are read with EXIF orientation applied, alpha composited on white and greyscale made RGB;
results are written atomically (temporary file, then rename) so a crash never leaves half a PNG.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pnpsam.config import PreprocessConfig

MIN_INPUT_SIDE = 16  # pixels; anything smaller carries no structure worth keeping
RESAMPLE = {
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
MAX_ASPECT_SIDES = 4  # the long side may be at most this many times the target size


class ImageInputError(ValueError):
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
    return to_rgb(ImageOps.exif_transpose(image) or image)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``: transparency composited on white, palette/greyscale expanded."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def target_size(
    width: int, height: int, cfg: PreprocessConfig, size: int, multiple: int
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


def prepare_image(
    image: Image.Image, cfg: PreprocessConfig, size: int, multiple: int
) -> Image.Image:
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


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` then rename to ``path``: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_json(data: dict[str, Any], path: Path) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))
