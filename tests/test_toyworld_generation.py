"""The shipped toy model: a real Stable Diffusion folder that draws what its caption says."""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pnpsam.config import TOY_V2_MODEL_DIR
from pnpsam.toyworld.evaluate import (
    DEFAULT_MODEL_PATH,
    GENERATION_BAR,
    GenerationConfig,
    bar_check,
    generate,
    generation_accuracy,
    load_toy_pipeline,
)
from pnpsam.toyworld.judge import judge_images
from pnpsam.toyworld.world import (
    BACKGROUNDS,
    COLORS,
    IMAGE_SIZE,
    SHAPES,
    WORLD_WORDS,
    SceneSpec,
    sample_specs,
)

# Measured on the shipped model with these exact seeds (20 DDIM steps, guidance 4): colour 0.975,
# shape 0.90, background 1.0, all three 0.875 (100 other seeds: 0.97 / 0.90 / 1.0 / 0.87; 200
# more: 0.96 / 0.87 / 0.995 / 0.835). The VAE alone, decoding its own encodings of fresh
# renders, reads 0.997 / 0.967 through the judge. Toy v2 (32x32 latent) on the same seeds:
# 1.0 / 0.975 / 0.90 / 0.875 (its bar run, 100 other captions at 25 steps: 0.99 / 0.95 / 0.90 /
# 0.86). The floors are the targets.
_N_SAMPLES, _SPEC_SEED = 40, 2024
_MIN_ACCURACY = {"color": 0.85, "shape": 0.85, "background": 0.85, "all": 0.8}
_SHIPPED = pytest.mark.parametrize(
    "folder", [DEFAULT_MODEL_PATH, TOY_V2_MODEL_DIR], ids=["toy", "toy-v2"]
)


@functools.cache
def _shipped_pipeline(folder: Path):
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_toy_pipeline(folder)


@pytest.fixture(scope="module")
def pipe():
    return _shipped_pipeline(DEFAULT_MODEL_PATH)


@_SHIPPED
def test_shipped_folder_is_a_small_fp16_stable_diffusion_pipeline(folder: Path) -> None:
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DDIMScheduler"
    assert (scheduler["beta_start"], scheduler["beta_end"]) == (0.00085, 0.012)
    assert scheduler["beta_schedule"] == "scaled_linear" and scheduler["steps_offset"] == 1
    assert not scheduler["clip_sample"] and not scheduler["set_alpha_to_one"]
    weights = sorted(folder.glob("*/*.safetensors"))
    assert len(weights) == 3  # unet, vae, text encoder
    assert sum(w.stat().st_size for w in weights) < 10 * 2**20
    for path in weights:
        assert {t.dtype for t in load_file(path).values()} == {torch.float16}, path


def test_loads_through_diffusers_with_sd15_layout(pipe) -> None:
    unet = pipe.unet
    assert unet.dtype == torch.float32
    assert [type(b).__name__ for b in unet.up_blocks] == [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ]
    assert len(unet.up_blocks[1].resnets) > 1  # PnP's residual injection site exists
    assert pipe.vae.config.scaling_factor == 1.0
    assert unet.config.sample_size * pipe.vae_scale_factor == IMAGE_SIZE
    # Every caption fits the tokenizer's short max length untruncated; world words are single
    # tokens except "desert" (4: the merge ranks of earlier words split it), as in training.
    tokenizer = pipe.tokenizer
    for color, shape, background in itertools.product(COLORS, SHAPES, BACKGROUNDS):
        ids = tokenizer(SceneSpec(color, shape, background).caption).input_ids
        assert len(ids) <= tokenizer.model_max_length
    pieces = {w: len(tokenizer(w).input_ids) - 2 for w in WORLD_WORDS}
    assert sum(n == 1 for n in pieces.values()) >= len(WORLD_WORDS) - 1, pieces


@_SHIPPED
def test_text_to_image_follows_the_caption(folder: Path) -> None:
    specs = sample_specs(_N_SAMPLES, seed=_SPEC_SEED)
    pipe = _shipped_pipeline(folder)
    scores, images = generation_accuracy(pipe, specs, seed=0, cfg=GenerationConfig(steps=20))
    assert images.shape == (_N_SAMPLES, IMAGE_SIZE, IMAGE_SIZE, 3)
    for label, floor in _MIN_ACCURACY.items():
        assert scores[label] >= floor, scores


def test_same_seed_different_caption_changes_what_is_drawn(pipe) -> None:
    """The caption, not the seed, decides colour and background (offset noise made this true)."""
    captions = [
        SceneSpec("red", "square", "grass").caption,
        SceneSpec("blue", "square", "snow").caption,
    ]
    images = generate(pipe, captions, seeds=[7, 7], cfg=GenerationConfig(steps=20))
    judged = judge_images(images)
    assert [j.color for j in judged] == ["red", "blue"]
    assert [j.background for j in judged] == ["grass", "snow"]
    assert np.abs(images[0].astype(int) - images[1].astype(int)).mean() > 30


def test_bar_check_names_each_missed_criterion() -> None:
    v2 = {"color": 0.92, "shape": 0.90, "background": 0.84, "all": 0.73}  # toy v2 as trained
    assert bar_check(v2) == [
        "color 0.92 >= 0.90 ok",
        "shape 0.90 >= 0.90 ok",
        "background 0.84 >= 0.90 MISSED",
        "all 0.73 >= 0.85 MISSED",
        "bar not met",
    ]
    assert bar_check(dict.fromkeys(GENERATION_BAR, 0.95))[-1] == "bar met"
