"""Settings of the metric models: plain dataclasses, importable without torch or transformers.

The CLI reads their defaults (model ids, backends) to build its help without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ClipScoreConfig:
    """Which CLIP to use and how many images go through it at once."""

    model_id: str = "openai/clip-vit-large-patch14"  # PIE-Bench's / torchmetrics' default
    batch_size: int = 16  # images per forward pass; bounds memory for large batches


@dataclass(frozen=True)
class StructureDistanceConfig:
    """How the structure distance is computed (defaults reproduce Splice / PIE-Bench)."""

    model_id: str = "facebook/dino-vitb8"  # DINO ViT-B/8, the model all three papers use
    resize: int = 224  # shorter side after resizing (Splice's global resize)
    max_size: int = 480  # cap on the longer side (torchvision Resize's max_size)
    antialias: bool = False  # torchvision's tensor Resize default when the papers were written
    include_cls: bool = True  # Splice / PIE-Bench keep the CLS token in the matrix
    min_patch_coverage: float = 0.5  # region variants: share of a patch inside the region
    region_tokens_only: bool = True  # False = PIE-Bench's edit_part (mask pixels, all tokens)


LpipsBackend = Literal["auto", "lpips", "transformers"]


@dataclass(frozen=True)
class LpipsConfig:
    """Which LPIPS flavour to compute (see :mod:`pnpsam.metrics.lpips`)."""

    backend: LpipsBackend = "auto"
    net: str = "squeeze"  # lpips-package backbone; PIE-Bench uses SqueezeNet
    backbone_id: str = "microsoft/resnet-18"  # transformers backend: any CNN with hidden states
    batch_size: int = 8  # pairs per forward pass
