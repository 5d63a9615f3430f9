"""CLIP score on a tiny random CLIP (offline tokenizer) loaded through the real loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from metrics_fixtures import photo, save_tiny_clip

from pnpsam.metrics.clip_score import ClipScoreConfig, ClipScorer

PROMPTS = ["a photo of a cat", "a painting of a dog", "xyz qrs", "cat cat cat", "12345"]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    folder = save_tiny_clip(tmp_path_factory.mktemp("clip"))
    config = ClipScoreConfig(model_id=str(folder), batch_size=2)
    return ClipScorer.from_pretrained(config, local_files_only=True)


def raw_cosines_by_hand(scorer, image, texts):
    """100 x cosine straight from get_image_features / get_text_features, unclamped."""
    model, processor = scorer.model, scorer.processor
    pixels = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        image_features = model.get_image_features(pixel_values=pixels).pooler_output
        text_features = model.get_text_features(**tokens).pooler_output
    return 100 * torch.nn.functional.cosine_similarity(image_features, text_features)


def test_score_is_100_cosine_clamped_at_zero(scorer):
    image = photo(64)
    raw = raw_cosines_by_hand(scorer, image, PROMPTS)
    assert (raw < 0).any() and (raw > 0).any()  # both sides of the clamp are exercised
    scores = scorer([image] * len(PROMPTS), PROMPTS)
    torch.testing.assert_close(scores, raw.clamp(min=0), rtol=1e-4, atol=1e-4)


def test_batch_equals_one_by_one(scorer):
    images = [photo(64), photo(64, "chelsea"), photo(48, "coffee")]
    texts = PROMPTS[:3]
    batch = scorer(images, texts)
    singles = torch.cat([scorer([i], [t]) for i, t in zip(images, texts, strict=True)])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-4)


def test_region_score_ignores_pixels_outside_the_region(scorer):
    image = photo(64)
    region = np.zeros((64, 64), dtype=bool)
    region[10:50, 20:60] = True
    noise = np.random.default_rng(0).integers(0, 256, image.shape, dtype=np.uint8)
    changed = np.where(region[..., None], image, noise)
    texts = ["a photo of a cat"] * 2
    inside, inside_changed = scorer([image, changed], texts, [region, region]).tolist()
    assert inside == inside_changed
    whole, whole_changed = scorer([image, changed], texts).tolist()
    assert whole != whole_changed


def test_region_is_the_image_times_the_mask(scorer):
    image = photo(64)
    region = np.zeros((64, 64), dtype=np.float32)
    region[:32] = 1.0
    blacked = image * region[..., None].astype(np.uint8)
    text = ["a painting of a dog"]
    assert scorer([image], text, [region]).item() == scorer([blacked], text).item()


def test_long_text_is_truncated_not_rejected(scorer):
    assert scorer([photo(64)], ["cat " * 200]).shape == (1,)


def test_bad_inputs_name_the_problem(scorer):
    with pytest.raises(ValueError, match="2 images and 1 texts"):
        scorer([photo(64), photo(64)], ["a cat"])
    with pytest.raises(ValueError, match="sequence of strings"):
        scorer([photo(64)], "a cat")
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        scorer([np.full((8, 8, 3), 2.0)], ["a cat"])
