"""Selecting the subject by text, without clicks (adapter tier): CLIPSeg or Grounding DINO.

Default model: ``CIDAS/clipseg-rd64-refined`` (CLIPSeg). Why it is the default: one small model
(~150 M parameters) that gives a per-pixel probability map directly, so text selection works
even without SAM weights, and the map keeps soft evidence for every pixel. Its map is coarse
(352x352 input), so :class:`pnpsam.masks.select.MaskMaker` refines it with SAM when SAM is
available: the thresholded map's box and peak become SAM's prompts.

Alternative: a Grounding DINO checkpoint (``IDEA-Research/grounding-dino-tiny``, ~170 M) as the
text model. It detects boxes, not pixels; the best box goes to SAM as a box prompt (or to
GrabCut when SAM cannot be loaded). Sharper on cluttered scenes, but without SAM it only gives a
box, and it is a second large model to download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from transformers import (
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    GroundingDinoForObjectDetection,
    GroundingDinoProcessor,
)

from pnpsam.errors import InputError
from pnpsam.imageio import check_rgb_uint8
from pnpsam.masks.config import Box, Point
from pnpsam.masks.hub import load_checked
from pnpsam.masks.ops import as_mask, largest_component, resize_mask

TEXT_MODEL_CLASSES: dict[str, tuple[Any, Any]] = {
    "clipseg": (CLIPSegForImageSegmentation, CLIPSegProcessor),
    "grounding-dino": (GroundingDinoForObjectDetection, GroundingDinoProcessor),
}
"""``config.model_type`` -> (model class, processor class) of the supported text selectors."""


class NotATextSegmenterError(InputError):
    """The id or folder holds a model that is not a supported text-grounded selector."""


def _check_text(text: str) -> str:
    if not text.strip():
        raise InputError(f"subject text must not be blank, got {text!r}")
    return text.strip()


class _TextModel:
    """A text-grounded model with its processor, on one device and dtype."""

    def __init__(self, model: Any, processor: Any) -> None:
        self.model = model.eval()
        self.processor: Any = processor  # typed Any: ProcessorMixin's __call__ is untyped

    def _inputs(self, image: np.ndarray, text: str) -> dict[str, torch.Tensor]:
        inputs = self.processor(images=[image], text=[text], return_tensors="pt", padding=True)
        moved = {key: value.to(self.model.device) for key, value in inputs.items()}
        moved["pixel_values"] = moved["pixel_values"].to(self.model.dtype)
        return moved


class TextSegmenter(_TextModel):
    """Text -> per-pixel subject probability, with CLIPSeg.

    >>> seg = load_text_selector("CIDAS/clipseg-rd64-refined")
    >>> prob = seg.probability_map(image, "the goldfish")   # HxW float32 in [0, 1]
    """

    @torch.inference_mode()
    def probability_map(self, image: np.ndarray, text: str) -> np.ndarray:
        """``HxW float32`` in [0, 1]: how likely each pixel of ``image`` (``HxWx3 uint8`` RGB)
        belongs to what ``text`` names, upsampled to the image size."""
        pixels = check_rgb_uint8(image)
        logits = self.model(**self._inputs(pixels, _check_text(text))).logits.float().cpu()
        probability = torch.sigmoid(logits.reshape(logits.shape[-2:])).numpy()
        return resize_mask(probability, *pixels.shape[:2])


@dataclass(frozen=True)
class Detection:
    """One text-grounded box: XYXY pixels inside the image, and the model's confidence."""

    box: Box
    score: float


class TextBoxDetector(_TextModel):
    """Text -> boxes around what it names, with Grounding DINO.

    >>> det = load_text_selector("IDEA-Research/grounding-dino-tiny")
    >>> best = det.detect(image, "the goldfish")[0]          # highest score first
    """

    @torch.inference_mode()
    def detect(self, image: np.ndarray, text: str) -> list[Detection]:
        """All of the model's boxes for ``text`` on ``image`` (``HxWx3 uint8`` RGB), clipped to
        the image, degenerate ones dropped, sorted by score (highest first)."""
        pixels = check_rgb_uint8(image)
        height, width = pixels.shape[:2]
        # Grounding DINO expects lower-case phrases that end with a period.
        query = _check_text(text).lower().rstrip(".") + "."
        inputs = self._inputs(pixels, query)
        outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=0.0,  # keep every box; the caller decides with its own threshold
            text_threshold=0.0,
            target_sizes=[(height, width)],
        )[0]
        boxes = result["boxes"].float().cpu().numpy()
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        scores = result["scores"].float().cpu().numpy()
        detections = [
            Detection((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(score))
            for b, score in zip(boxes, scores, strict=True)
            if b[2] > b[0] and b[3] > b[1]
        ]
        return sorted(detections, key=lambda d: d.score, reverse=True)


TextSelector = TextSegmenter | TextBoxDetector


def load_text_selector(
    model_id_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **kwargs: Any,
) -> TextSelector:
    """Load a CLIPSeg (:class:`TextSegmenter`) or Grounding DINO (:class:`TextBoxDetector`)
    checkpoint, whichever the id or folder holds; ``kwargs`` go to ``from_pretrained``.

    Raises ``OSError`` when it cannot be found, :class:`NotATextSegmenterError` for other models.
    """
    model, processor = load_checked(
        model_id_or_path,
        TEXT_MODEL_CLASSES,
        NotATextSegmenterError,
        "CIDAS/clipseg-rd64-refined or IDEA-Research/grounding-dino-tiny",
        device,
        dtype,
        **kwargs,
    )
    if model.config.model_type == "clipseg":
        return TextSegmenter(model, processor)
    return TextBoxDetector(model, processor)


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
        raise InputError(f"threshold must be in (0, 1), got {threshold}")
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
