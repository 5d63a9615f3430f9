"""Tiny random-weight models for the metrics tests, saved like a hub checkpoint.

Each builder writes a model plus its processor config to ``folder`` and returns the folder, so
tests load it back through the metrics' real ``from_pretrained`` path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPVisionConfig,
    ResNetConfig,
    ResNetModel,
    ViTConfig,
    ViTImageProcessor,
    ViTModel,
)

from pnpsam.models.offline import build_offline_clip_tokenizer, token_ids_config

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CLIP_WORDS = ("cat", "dog", "photo", "painting", "of", "a")


def save_tiny_dino(folder: Path) -> Path:
    """ViT with DINO-B/8's patch size and layout (3 blocks, 4 heads, width 32)."""
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=64,
        patch_size=8,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(folder)
    return folder


def save_tiny_clip(folder: Path) -> Path:
    """CLIP with a 32-wide text and vision tower and the offline byte-level tokenizer."""
    torch.manual_seed(0)
    tokenizer = build_offline_clip_tokenizer(CLIP_WORDS)
    text = CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        **token_ids_config(tokenizer),
    )
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def save_tiny_resnet(folder: Path) -> Path:
    """Two-stage basic-block ResNet (a stand-in for an ImageNet CNN backbone)."""
    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    ResNetModel(config).save_pretrained(folder)
    ViTImageProcessor(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(folder)
    return folder


def photo(size: int = 64, name: str = "astronaut") -> np.ndarray:
    """A real scikit-image photo resized to ``size`` x ``size``, HxWx3 uint8."""
    image = Image.fromarray(getattr(skdata, name)()).convert("RGB")
    return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC))
