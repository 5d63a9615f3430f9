"""Conversions shared by the metrics: masks in the formats users hold, to one layout, and batches.

Images (``PixelInput``) are converted by :mod:`pnpsam.imageio` (``to_float_array``,
``to_uint8_array``). Accepted masks: NumPy/torch ``HxW`` (bool, float in [0, 1], or uint8 with
0/1 or 0/255), ``PIL.Image`` (mode ``L``/``1``); 1 = inside the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch
from PIL import Image

MaskInput: TypeAlias = Image.Image | np.ndarray | torch.Tensor


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
