"""Tiny random-weight SAM and CLIPSeg checkpoints for the masks tests.

Each builder saves a model plus its processor to ``folder`` like a hub checkpoint, so tests load
it back through the real ``from_pretrained`` path. Random weights give meaningless masks: these
test plumbing; mask logic is tested on constructed masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import (
    BertConfig,
    BertTokenizer,
    CLIPSegConfig,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    CLIPSegTextConfig,
    CLIPSegVisionConfig,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessorPil,
    GroundingDinoProcessor,
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
    SamConfig,
    SamImageProcessorPil,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
    SwinConfig,
    ViTImageProcessorPil,
)

from pnpsam.models.offline import build_offline_clip_tokenizer, token_ids_config

TINY_SAM_INPUT = 256  # model input side; the embedding grid is TINY_SAM_INPUT / 16 = 16


def save_tiny_sam(folder: Path, seed: int = 0) -> Path:
    """A 2-layer SAM at 256 px input (real SAM: 1024) with a PIL processor, saved to ``folder``."""
    patch = 16
    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=patch,
        window_size=7,
        global_attn_indexes=[1],
        mlp_dim=64,
        num_pos_feats=16,
        image_size=TINY_SAM_INPUT,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=32,
        mask_input_channels=4,
        image_size=TINY_SAM_INPUT,
        image_embedding_size=TINY_SAM_INPUT // patch,
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
    )
    torch.manual_seed(seed)
    model = SamModel(
        SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    )
    low_res = 4 * TINY_SAM_INPUT // patch  # the decoder's mask logits are 4x the embedding grid
    processor = SamProcessor(
        image_processor=SamImageProcessorPil(
            size={"longest_edge": TINY_SAM_INPUT},
            pad_size={"height": TINY_SAM_INPUT, "width": TINY_SAM_INPUT},
            mask_size={"longest_edge": low_res},
            mask_pad_size={"height": low_res, "width": low_res},
        )
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_tiny_sam2(folder: Path, seed: int = 0) -> Path:
    """A 5-block Hiera SAM-2 at 256 px input, saved with a hand-written processor config.

    The config is written by hand because transformers' ``Sam2ImageProcessor`` cannot even be
    instantiated without torchvision (so it cannot be saved from an instance here).
    """
    side = TINY_SAM_INPUT
    backbone = Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[side, side],
        blocks_per_stage=[1, 1, 2, 1],  # the global block (3) must not start a stage
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        window_size_per_stage=[4, 4, 4, 4],
        global_attention_blocks=[3],
        window_positional_embedding_background_size=[4, 4],
    )
    strides = (4, 8, 16)  # the patch embedding's stride, then two query-pool stages
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[128, 64, 32, 16],
        backbone_feature_sizes=[[side // s, side // s] for s in strides],
        fpn_hidden_size=32,
    )
    config = Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(
            hidden_size=32, image_size=side, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    torch.manual_seed(seed)
    Sam2Model(config).save_pretrained(folder)
    processor_config = {
        "image_processor_type": "Sam2ImageProcessor",
        "processor_class": "Sam2Processor",
        "size": {"height": side, "width": side},
        "mask_size": {"height": side // 4, "width": side // 4},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor_config))
    return folder


def save_tiny_clipseg(folder: Path, seed: int = 0) -> Path:
    """A 3-layer CLIPSeg at 64 px input with the offline CLIP tokenizer, saved to ``folder``."""
    tokenizer = build_offline_clip_tokenizer(["the", "goldfish", "cat", "cup"])
    text = CLIPSegTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        **token_ids_config(tokenizer),
    )
    vision = CLIPSegVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=64,
        patch_size=16,
    )
    config = CLIPSegConfig(
        text_config=text.to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=32,
        extract_layers=[0, 1, 2],
        reduce_dim=16,
        decoder_intermediate_size=32,
        decoder_num_attention_heads=2,
    )
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config)
    image_processor = ViTImageProcessorPil(
        size={"height": 64, "width": 64},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )
    CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


def save_tiny_grounding_dino(folder: Path, seed: int = 0) -> Path:
    """A 1-block-per-stage Swin + 1-layer BERT Grounding DINO with 10 queries, saved to
    ``folder`` with a word-level BERT tokenizer and a PIL image processor (64..96 px)."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "the", "a", "cup", "cat"]
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)})
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        image_size=64,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,  # the shared box head needs a second decoder layer to tie to
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=32,
        max_text_len=32,
        encoder_n_points=2,
        decoder_n_points=2,
        disable_custom_kernels=True,
    )
    torch.manual_seed(seed)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
        folder
    )
    return folder


def disc_mask(height: int, width: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """``HxW float32`` 0/1 disc of ``radius`` pixels around ``(cx, cy)``."""
    yy, xx = np.mgrid[0:height, 0:width]
    return (((xx - cx) ** 2 + (yy - cy) ** 2) <= radius**2).astype(np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks thresholded at 0.5."""
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))
