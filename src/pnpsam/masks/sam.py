"""Segment Anything through transformers: a click-to-mask predictor (adapter tier).

In the style of segment-anything's ``SamPredictor``: :meth:`SamPointSegmenter.set_image` runs the
costly image encoder once and caches the embedding; every :meth:`SamPointSegmenter.predict`
(one per new click) only runs the light prompt encoder and mask decoder on it.

Supported checkpoints: SAM (``model_type == "sam"``, e.g. ``facebook/sam-vit-base``) and SAM-2
(``"sam2"``, e.g. ``facebook/sam2.1-hiera-tiny``). transformers' SAM-2 image processor needs
torchvision; without it loading a SAM-2 checkpoint raises ``ImportError`` saying so (the SAM-2
model itself accepts the same prompt layout; checked on a tiny Sam2Model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Sam2Model,
    Sam2Processor,
    SamModel,
    SamProcessor,
)

from pnpsam.errors import InputError
from pnpsam.imageio import check_rgb_uint8
from pnpsam.masks.config import Box, Point, resolve_sam_name, validate_prompts
from pnpsam.masks.hub import load_checked
from pnpsam.masks.ops import clicks_outside

SAM_MODEL_CLASSES: dict[str, tuple[type[PreTrainedModel], type[ProcessorMixin]]] = {
    "sam": (SamModel, SamProcessor),
    "sam2": (Sam2Model, Sam2Processor),
}
"""``config.model_type`` -> (model class, processor class) of the supported SAM families."""


class NotASamModelError(InputError):
    """The id or folder holds a model that is not SAM / SAM-2."""


@dataclass(frozen=True)
class SamPrediction:
    """SAM's candidate masks for one prompt.

    ``masks``: ``NxHxW bool`` at the full image size; ``iou_scores``: ``N float32``, the model's
    own estimate of each mask's quality (higher is better).
    """

    masks: np.ndarray
    iou_scores: np.ndarray

    @property
    def best_index(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.iou_scores))

    def best_index_for(self, points: Sequence[Point] = ()) -> int:
        """The candidate with the highest predicted IoU among those that contain every positive
        click ``points`` (``(x, y)`` pixels); the best overall when none does (the caller's
        doubt check then says so). A mask that leaves out the user's own click answers
        another object than the one clicked, however confident the IoU head is."""
        holding = [i for i, m in enumerate(self.masks) if not clicks_outside(m, points)]
        if not holding:
            return self.best_index
        return max(holding, key=lambda i: float(self.iou_scores[i]))

    def select(self, index: int | None = None) -> np.ndarray:
        """Candidate ``index`` (None = best predicted IoU) as ``HxW bool``."""
        chosen = self.best_index if index is None else index
        if not 0 <= chosen < len(self.masks):
            raise InputError(
                f"mask index {index} out of range: SAM returned {len(self.masks)} candidates "
                f"(0..{len(self.masks) - 1})"
            )
        return self.masks[chosen]


class SamPointSegmenter:
    """Click-to-mask with a cached image embedding.

    >>> seg = SamPointSegmenter.from_pretrained("facebook/sam-vit-base", device="cuda")
    >>> seg.set_image(image)                                  # HxWx3 uint8 RGB, encoder runs once
    >>> pred = seg.predict([(200, 150)], [1])                 # clicks (x, y), labels 1 / 0
    >>> mask = pred.select()                                  # HxW bool, best predicted IoU
    """

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin) -> None:
        family = model.config.model_type
        if family not in SAM_MODEL_CLASSES:
            raise NotASamModelError(
                f"model type {family!r} is not SAM; expected one of {sorted(SAM_MODEL_CLASSES)}"
            )
        self.family: str = family
        self.model = model.eval()
        self.processor: Any = processor  # typed Any: the processors' call signatures differ
        self._embeddings: Any = None  # SAM: a tensor; SAM-2: a list of feature maps
        self._original_size: tuple[int, int] | None = None
        self._post_process_sizes: dict[str, Any] = {}
        self._coord_scale: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> SamPointSegmenter:
        """Load a SAM / SAM-2 checkpoint (hub id, local folder, or a shipped alias such as
        ``toy``: :data:`pnpsam.masks.config.SAM_ALIASES`) and its processor.

        ``kwargs`` go to every ``from_pretrained`` (e.g. ``local_files_only=True``, ``revision``).
        Raises ``OSError`` when the id cannot be found or downloaded (offline, typo),
        :class:`NotASamModelError` when it is another kind of model, ``ImportError`` for a SAM-2
        checkpoint without torchvision.
        """
        model, processor = load_checked(
            resolve_sam_name(model_id_or_path),
            SAM_MODEL_CLASSES,
            NotASamModelError,
            "facebook/sam-vit-base",
            device,
            dtype,
            **kwargs,
        )
        return cls(model, processor)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has cached an embedding."""
        return self._embeddings is not None

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the current image."""
        if self._original_size is None:
            raise RuntimeError("no image set; call set_image(image) first")
        return self._original_size

    def reset_image(self) -> None:
        """Drop the cached embedding."""
        self._embeddings = None
        self._original_size = None
        self._post_process_sizes = {}

    @torch.inference_mode()
    def set_image(self, image: np.ndarray) -> None:
        """Encode an ``HxWx3 uint8`` RGB image once; later predictions reuse the embedding."""
        pixels = check_rgb_uint8(image)
        inputs = self.processor(images=pixels, return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.dtype)
        self._embeddings = self.model.get_image_embeddings(pixel_values)
        height, width = pixels.shape[:2]
        self._original_size = (height, width)
        if self.family == "sam":
            # SAM resizes the longest side and pads; masks are cropped back with both sizes.
            reshaped_h, reshaped_w = (int(v) for v in inputs["reshaped_input_sizes"][0])
            self._post_process_sizes = {
                "original_sizes": inputs["original_sizes"],
                "reshaped_input_sizes": inputs["reshaped_input_sizes"],
            }
        else:
            # SAM-2 resizes to a square without keeping the aspect ratio.
            reshaped_h = reshaped_w = int(self.processor.target_size)
            self._post_process_sizes = {"original_sizes": inputs["original_sizes"]}
        self._coord_scale = (reshaped_w / width, reshaped_h / height)

    def to_model_coords(self, xy: np.ndarray) -> np.ndarray:
        """Image-pixel ``(..., 2)`` x/y coordinates -> the resized model input's pixels."""
        return np.asarray(xy, dtype=np.float64) * np.asarray(self._coord_scale)

    @torch.inference_mode()
    def predict(
        self,
        points: Sequence[Point] = (),
        labels: Sequence[int] = (),
        box: Box | None = None,
        multimask: bool = True,
    ) -> SamPrediction:
        """Masks for clicks ``points`` (``(x, y)`` pixels, ``labels`` 1 = subject, 0 = not) and/or
        an XYXY pixel ``box``, on the image given to :meth:`set_image`.

        ``multimask=True`` returns SAM's 3 candidates (whole / part / subpart), else 1.
        """
        height, width = self.image_size
        if len(points) != len(labels):
            raise InputError(f"got {len(points)} points but {len(labels)} labels")
        if any(label not in (0, 1) for label in labels):
            raise InputError(f"point labels must be 1 (subject) or 0 (not subject), got {labels}")
        if not points and box is None:
            raise InputError("SAM needs at least one point or a box")
        positives = [p for p, lab in zip(points, labels, strict=True) if lab == 1]
        negatives = [p for p, lab in zip(points, labels, strict=True) if lab == 0]
        validate_prompts(positives, negatives, box, height, width)

        prompt: dict[str, torch.Tensor] = {}
        if points:
            coords = self.to_model_coords(np.asarray(points, dtype=np.float64))
            # Layout (image batch, masks per image, points per mask, xy).
            prompt["input_points"] = torch.as_tensor(coords[None, None], dtype=self.dtype)
            prompt["input_labels"] = torch.as_tensor(
                np.asarray(labels)[None, None], dtype=torch.long
            )
        if box is not None:
            corners = self.to_model_coords(np.asarray(box, dtype=np.float64).reshape(2, 2))
            prompt["input_boxes"] = torch.as_tensor(corners.reshape(1, 1, 4), dtype=self.dtype)
        outputs = self.model(
            image_embeddings=self._embeddings,
            multimask_output=multimask,
            **{key: value.to(self.device) for key, value in prompt.items()},
        )
        # pred_masks: (1, 1, N, h, w) low-resolution logits -> (N, H, W) bool at image size.
        full_size = self.processor.post_process_masks(
            outputs.pred_masks.float().cpu(), **self._post_process_sizes
        )[0][0]
        return SamPrediction(
            masks=full_size.numpy().astype(bool),
            iou_scores=outputs.iou_scores[0, 0].float().cpu().numpy(),
        )
