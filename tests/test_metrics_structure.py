"""Structure distance on a tiny random DINO-layout ViT loaded through the real loader."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from metrics_fixtures import photo, save_tiny_dino

from pnpsam.metrics.structure import (
    DinoStructureDistance,
    StructureDistanceConfig,
    _resized_size,
    cosine_self_similarity,
)

PATCH = 8


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    return save_tiny_dino(tmp_path_factory.mktemp("dino"))


def load(dino_dir, **overrides) -> DinoStructureDistance:
    config = StructureDistanceConfig(model_id=str(dino_dir), resize=64, **overrides)
    return DinoStructureDistance.from_pretrained(config, local_files_only=True)


@pytest.fixture(scope="module")
def metric(dino_dir):
    return load(dino_dir)


def scramble_patches(image: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Cyclically swap the first ``fraction`` of a fixed random order of 8x8 patches.

    Levels are nested: a larger fraction moves a superset of the patches a smaller one moves.
    """
    grid = image.shape[0] // PATCH
    tiles = image.reshape(grid, PATCH, grid, PATCH, 3).swapaxes(1, 2).reshape(-1, PATCH, PATCH, 3)
    order = np.random.default_rng(seed).permutation(len(tiles))[: round(fraction * len(tiles))]
    tiles = tiles.copy()
    tiles[order] = tiles[np.roll(order, 1)]
    return tiles.reshape(grid, grid, PATCH, PATCH, 3).swapaxes(1, 2).reshape(image.shape)


def test_identical_images_give_exactly_zero(metric):
    image = photo(64)
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:40, 16:56] = True
    distances = metric([image, image], [image.copy(), image.copy()], [None, mask])
    assert distances.tolist() == [0.0, 0.0]


def test_distance_grows_as_the_image_is_scrambled(metric):
    image = photo(64)
    levels = [0.0, 0.1, 0.25, 0.5, 1.0]
    outputs = [scramble_patches(image, level) for level in levels]
    distances = metric([image] * len(levels), outputs).tolist()
    assert distances[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(distances)), distances


def test_hook_captures_the_last_blocks_keys(metric):
    image = photo(64)
    pixels = metric.preprocess(image)[None]
    hidden = metric.model(pixels, output_hidden_states=True).hidden_states[-2]
    last = metric.model.layers[-1]
    by_hand = cosine_self_similarity(last.attention.k_proj(last.layernorm_before(hidden)))
    hooked = metric.key_self_similarity(pixels)
    assert hooked.shape == (1, 1 + 64, 1 + 64)  # CLS + 8x8 patches, like Splice
    torch.testing.assert_close(hooked, by_hand, rtol=1e-5, atol=1e-6)


def test_include_cls_false_drops_one_token(dino_dir):
    pixels = load(dino_dir).preprocess(photo(64))[None]
    assert load(dino_dir, include_cls=False).key_self_similarity(pixels).shape == (1, 64, 64)


@pytest.mark.parametrize("tokens_only", [True, False])
def test_region_score_ignores_pixels_outside_the_region(dino_dir, tokens_only):
    metric = load(dino_dir, region_tokens_only=tokens_only)
    source, output = photo(64), photo(64, "chelsea")
    region = np.zeros((64, 64), dtype=np.float32)
    region[16:48, 8:40] = 1.0
    noise = np.random.default_rng(3).integers(0, 256, source.shape, dtype=np.uint8)
    changed = np.where(region[..., None] > 0, output, noise)
    base, after = metric([source, source], [output, changed], [region, region]).tolist()
    assert base > 0.0
    assert after == base
    whole = metric([source], [changed]).item()
    assert whole != metric([source], [output]).item()  # the whole-image score does see them


def test_region_keeps_the_tokens_mostly_inside(metric):
    region = np.zeros((64, 64), dtype=np.float32)
    region[:, :36] = 1.0  # columns 0-35: patch columns 0-3 fully in, column 4 half (4/8) in
    keep = metric.token_weights(region, (64, 64))
    grid = keep[1:].reshape(8, 8)
    assert bool(keep[0])  # CLS kept
    assert grid[:, :5].all() and not grid[:, 5:].any()


def test_empty_region_gives_nan(metric):
    image = photo(64)
    assert math.isnan(metric([image], [image], [np.zeros((64, 64))]).item())


def test_batch_equals_one_by_one_and_mixed_sizes(metric):
    a, b = photo(64), photo(64, "coffee")
    wide_a = np.asarray(photo(96))[:48]  # 48x96
    wide_b = np.asarray(photo(96, "coffee"))[:48]
    batch = metric([a, wide_a, a], [b, wide_b, a])
    singles = [metric([s], [o]).item() for s, o in [(a, b), (wide_a, wide_b), (a, a)]]
    torch.testing.assert_close(batch, torch.tensor(singles), rtol=1e-5, atol=1e-7)


def test_resize_follows_torchvision_resize_with_max_size():
    assert _resized_size(512, 512, 224, 480) == (224, 224)
    assert _resized_size(300, 451, 224, 480) == (224, 336)
    assert _resized_size(1000, 100, 224, 480) == (480, 48)


def test_pixels_are_scaled_to_unit_range_before_normalisation(metric):
    white = np.full((64, 64, 3), 255, dtype=np.uint8)
    expected = (1.0 - metric._mean) / metric._std
    torch.testing.assert_close(metric.preprocess(white)[:, 0, 0], expected)


def test_cosine_self_similarity_by_hand():
    tokens = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]]])
    expected = F.cosine_similarity(tokens[0][:, None], tokens[0][None], dim=-1)
    torch.testing.assert_close(cosine_self_similarity(tokens)[0], expected)


def test_bad_inputs_name_the_problem(metric):
    image = photo(64)
    with pytest.raises(ValueError, match="1 source images but 2 outputs"):
        metric([image], [image, image])
    with pytest.raises(ValueError, match=r"mask shape \(32, 32\) does not match"):
        metric([image], [image], [np.ones((32, 32))])
    with pytest.raises(ValueError, match="differ after resizing"):
        metric([image], [photo(64)[:32]])  # 32x64 vs 64x64


def test_hub_layout_keys_load_into_the_hooked_projection(dino_dir, metric):
    """facebook/dino-vitb8 stores 4.x names (as save_pretrained still writes them); the key
    weights must land in the projection the hook watches, not be silently re-initialised."""
    from safetensors.torch import load_file

    state = load_file(dino_dir / "model.safetensors")
    stored = state["encoder.layer.2.attention.attention.key.weight"]
    torch.testing.assert_close(metric._key_projection.weight, stored)
