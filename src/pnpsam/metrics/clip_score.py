"""CLIP score: ``100 * cosine(image embedding, text embedding)``, clamped at 0.

The definition torchmetrics' ``CLIPScore`` implements and PIE-Bench reports, with
``openai/clip-vit-large-patch14`` by default. Differences worth knowing:

* torchmetrics clamps the *mean* over the images it has seen; PIE-Bench calls it once per image,
  so the clamp acts per image. We clamp each image's score at 0 (PIE-Bench's numbers).
* Images go through the checkpoint's own ``CLIPImageProcessor`` as uint8 ``HxWx3`` (it resizes
  the shorter side, centre-crops and rescales by 1/255), as torchmetrics passes them.
* Text is truncated to the tokenizer's ``model_max_length`` (77 for CLIP).
* A region score ("edited" in PIE-Bench) multiplies the uint8 image by the 0/1 region mask
  first (black outside), exactly as PIE-Bench's ``calculate_clip_similarity`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import CLIPModel, CLIPProcessor

from pnpsam.imageio import PixelInput, to_uint8_array
from pnpsam.metrics.config import ClipScoreConfig
from pnpsam.metrics.image_inputs import MaskInput, move_to, to_mask_array


def _pooled(features: object) -> torch.Tensor:
    """transformers 5 returns an output object whose ``pooler_output`` is projected; 4 a tensor."""
    pooled = getattr(features, "pooler_output", features)
    if not isinstance(pooled, torch.Tensor):
        raise TypeError(
            f"expected CLIP features as a tensor (or an output with pooler_output); "
            f"got {type(pooled).__name__}"
        )
    return pooled


def apply_region_uint8(image: PixelInput, region: MaskInput) -> np.ndarray:
    """``HxWx3`` uint8 image with pixels outside ``region`` (``HxW``, 1 = keep) set to 0."""
    pixels = to_uint8_array(image)
    mask = to_mask_array(region, pixels.shape[:2])
    return np.round(pixels * mask[..., None]).astype(np.uint8)


class ClipScorer:
    """Loads a CLIP once and scores many (image, text) pairs; CPU or GPU, batched."""

    def __init__(
        self, model: CLIPModel, processor: CLIPProcessor, config: ClipScoreConfig | None = None
    ) -> None:
        self.config = config or ClipScoreConfig()
        self.model = model.eval()
        self.processor = processor

    @classmethod
    def from_pretrained(
        cls,
        config: ClipScoreConfig | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        local_files_only: bool = False,
    ) -> ClipScorer:
        """Load ``config.model_id`` (hub id or folder) and its processor."""
        config = config or ClipScoreConfig()
        model = CLIPModel.from_pretrained(
            config.model_id, dtype=dtype, local_files_only=local_files_only
        )
        processor = CLIPProcessor.from_pretrained(
            config.model_id, local_files_only=local_files_only
        )
        move_to(model, device)
        return cls(model, processor, config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[PixelInput]) -> torch.Tensor:
        """``B`` images -> ``BxD`` unit-norm image embeddings (float32)."""
        pixels = self.processor.image_processor(
            images=[to_uint8_array(image) for image in images], return_tensors="pt"
        )["pixel_values"]
        dtype = next(self.model.parameters()).dtype
        features = _pooled(
            self.model.get_image_features(pixel_values=pixels.to(self.device, dtype))
        )
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """``B`` texts -> ``BxD`` unit-norm text embeddings (float32)."""
        tokenizer = self.processor.tokenizer
        tokens = tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        ).to(self.device)
        features = _pooled(
            self.model.get_text_features(
                input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]
            )
        )
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def __call__(
        self,
        images: Sequence[PixelInput],
        texts: Sequence[str],
        regions: Sequence[MaskInput | None] | None = None,
    ) -> torch.Tensor:
        """CLIP score per (image, text) pair, ``B`` float32 on CPU, in [0, 100].

        ``regions[i]`` (``HxW``, 1 = keep) blacks out the rest of image ``i`` first; ``None``
        scores the whole image.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, one per image, not one string")
        if len(images) != len(texts) or not images:
            raise ValueError(f"got {len(images)} images and {len(texts)} texts; need equal, > 0")
        region_list = list(regions) if regions is not None else [None] * len(images)
        if len(region_list) != len(images):
            raise ValueError(f"got {len(region_list)} regions for {len(images)} images")
        prepared = [
            apply_region_uint8(image, region) if region is not None else to_uint8_array(image)
            for image, region in zip(images, region_list, strict=True)
        ]
        scores = []
        step = self.config.batch_size
        for start in range(0, len(prepared), step):
            image_emb = self.image_embeddings(prepared[start : start + step])
            text_emb = self.text_embeddings(texts[start : start + step])
            scores.append((100.0 * (image_emb * text_emb).sum(dim=-1)).clamp(min=0.0).cpu())
        return torch.cat(scores)
