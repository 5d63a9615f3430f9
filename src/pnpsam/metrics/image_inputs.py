"""Conversions shared by the metrics: images and masks in the formats users hold, to one layout.

Accepted images: ``PIL.Image`` (any mode, converted to RGB), NumPy ``HxWx3`` (uint8 in [0, 255]
or float in [0, 1]) or ``HxW`` greyscale, torch ``3xHxW`` float in [0, 1].
Accepted masks: NumPy/torch ``HxW`` (bool, float in [0, 1], or uint8 with 0/1 or 0/255),
``PIL.Image`` (mode ``L``/``1``); 1 = inside the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image

ImageInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor
MaskInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor


def to_float_array(image: ImageInput) -> np.ndarray:
    """``HxWx3`` float32 in [0, 1] from any accepted image format."""
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
        array = array.astype(np.float32)
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"float image values must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}]"
        )
    return array


def to_uint8_array(image: ImageInput) -> np.ndarray:
    """``HxWx3`` uint8 (rounded), the format CLIP's image processor rescales by 1/255."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return image
    return np.round(to_float_array(image) * 255.0).astype(np.uint8)


def to_mask_array(mask: MaskInput, shape: tuple[int, int]) -> np.ndarray:
    """``HxW`` float32 in [0, 1] (1 = inside); ``shape`` is the image's (H, W) and must match."""
    if isinstance(mask, Image.Image):
        array = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    else:
        raw = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        raw = np.squeeze(raw)
        if raw.dtype == np.uint8 and raw.size and raw.max() > 1:
            array = raw.astype(np.float32) / 255.0
        else:
            array = raw.astype(np.float32)
    if array.shape != tuple(shape):
        raise ValueError(f"mask shape {array.shape} does not match image shape {tuple(shape)}")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(f"mask values must lie in [0, 1], got [{array.min()}, {array.max()}]")
    return array


def check_pairs(sources: Sequence[object], outputs: Sequence[object]) -> None:
    """Raise ``ValueError`` unless the two batches have the same, non-zero length."""
    if len(sources) != len(outputs):
        raise ValueError(f"got {len(sources)} source images but {len(outputs)} outputs")
    if not sources:
        raise ValueError("got an empty batch of images")


def as_list(value: object) -> list:
    """A single image/mask/text becomes a one-item list; sequences are copied into a list."""
    if isinstance(value, (str, Image.Image, np.ndarray, torch.Tensor)):
        return [value]
    return list(value)  # type: ignore[call-overload]


def move_to(module: torch.nn.Module, device: str | torch.device) -> None:
    """Move a model's weights to ``device`` in place (``nn.Module.to`` on modules is in place)."""
    module.to(device)
