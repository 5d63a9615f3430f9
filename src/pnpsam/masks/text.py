"""Selecting the subject by text, without clicks: CLIPSeg through transformers.

Default model: ``CIDAS/clipseg-rd64-refined``. Why CLIPSeg rather than Grounding DINO boxes into
SAM: it is one small model (~150 M parameters) that gives a per-pixel probability map directly,
needs no SAM weights, and keeps soft evidence for every pixel. Its map is coarse (352x352 input),
so :func:`pnpsam.masks.select.make_subject_mask` refines it with SAM when SAM is available: the
thresholded map's box and peak become SAM's prompts.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from transformers import AutoConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

from pnpsam.masks.config import Box, Point
from pnpsam.masks.ops import as_mask, as_rgb_image, largest_component, resize_mask

TEXT_MODEL_TYPES = ("clipseg",)


class NotATextSegmenterError(ValueError):
    """The id or folder holds a model that is not a supported text-grounded segmenter."""


class TextSegmenter:
    """Text -> per-pixel subject probability, with CLIPSeg.

    >>> seg = TextSegmenter.from_pretrained("CIDAS/clipseg-rd64-refined")
    >>> prob = seg.probability_map(image, "the goldfish")   # HxW float32 in [0, 1]
    """

    def __init__(self, model: CLIPSegForImageSegmentation, processor: CLIPSegProcessor) -> None:
        self.model = model.eval()
        self.processor: Any = processor  # typed Any: ProcessorMixin's __call__ is untyped

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> TextSegmenter:
        """Load a CLIPSeg checkpoint (hub id or folder); ``kwargs`` go to ``from_pretrained``.

        Raises ``OSError`` when it cannot be found, :class:`NotATextSegmenterError` for other
        models.
        """
        config = AutoConfig.from_pretrained(model_id_or_path, **kwargs)
        if config.model_type not in TEXT_MODEL_TYPES:
            raise NotATextSegmenterError(
                f"{model_id_or_path!r} is a {config.model_type!r} model; text selection needs "
                f"one of {TEXT_MODEL_TYPES} (e.g. CIDAS/clipseg-rd64-refined)"
            )
        processor = CLIPSegProcessor.from_pretrained(model_id_or_path, **kwargs)
        model = CLIPSegForImageSegmentation.from_pretrained(
            model_id_or_path, dtype=dtype, device_map=torch.device(device), **kwargs
        )
        return cls(model, processor)

    @torch.inference_mode()
    def probability_map(self, image: np.ndarray, text: str) -> np.ndarray:
        """``HxW float32`` in [0, 1]: how likely each pixel of ``image`` (``HxWx3 uint8`` RGB)
        belongs to what ``text`` names, upsampled to the image size."""
        pixels = as_rgb_image(image)
        if not text.strip():
            raise ValueError(f"subject text must not be blank, got {text!r}")
        inputs = self.processor(text=[text], images=[pixels], padding=True, return_tensors="pt")
        inputs = {key: value.to(self.model.device) for key, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        logits = self.model(**inputs).logits.float().cpu()
        probability = torch.sigmoid(logits.reshape(logits.shape[-2:])).numpy()
        return resize_mask(probability, *pixels.shape[:2])


def probability_to_mask(
    probability: np.ndarray, threshold: float = 0.4, keep_largest: bool = True
) -> np.ndarray:
    """Threshold a ``HxW`` probability map into a 0/1 ``float32`` mask.

    ``keep_largest`` drops every blob but the biggest (text often also lights up look-alikes).
    The threshold is relative to the map's maximum when that maximum is below ``threshold``,
    so a weak but clear peak still gives a mask: pixels above ``threshold * max`` are kept.
    """
    prob = as_mask(probability, "probability map")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    peak = float(prob.max())
    cut = threshold if peak >= threshold else threshold * peak
    mask = (prob > cut).astype(np.float32)
    return largest_component(mask) if keep_largest else mask


def prompts_from_mask(mask: np.ndarray, probability: np.ndarray | None = None) -> tuple[Box, Point]:
    """SAM prompts from a coarse mask: its XYXY bounding box and a point inside it.

    The point is the ``probability`` peak inside the mask when given, else the mask pixel
    farthest from the mask's edge. Raises ``ValueError`` for an empty mask.
    """
    solid = as_mask(mask) > 0.5
    rows, cols = np.nonzero(solid)
    if rows.size == 0:
        raise ValueError("cannot make prompts from an empty mask")
    box: Box = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    if probability is not None:
        score = np.where(solid, as_mask(probability, "probability map"), -1.0)
    else:
        score = cv2.distanceTransform(solid.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(np.argmax(score)), score.shape)
    return box, (float(x), float(y))
