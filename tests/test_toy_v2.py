"""The shipped toy v2 (32x32 latent, ``--model toy-v2``): a real SD folder that meets the
generation bar and edits with its own settings (residual block 2, its first 8x8 layer)."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from pnpsam.api import PnPEditor
from pnpsam.config import MODEL_ALIASES, TOY_V2_MODEL_DIR, ModelConfig, model_defaults
from pnpsam.toyworld.evaluate import GenerationConfig, generation_accuracy, load_toy_pipeline
from pnpsam.toyworld.pairs import score_toy_edit, toy_pairs
from pnpsam.toyworld.world import IMAGE_SIZE, sample_specs

# Measured on the shipped v2 with these seeds (the v1 test's 40 captions, 20 DDIM steps,
# guidance 4): colour 1.0, shape 0.975, background 0.90, all three 0.875. Its bar run (100
# other captions, 25 steps): colour 0.99, shape 0.95, background 0.90, all three 0.86.
# Floors as v1's test, the issue's targets.
_N_SAMPLES, _SPEC_SEED = 40, 2024
_MIN_ACCURACY = {"color": 0.85, "shape": 0.85, "background": 0.85, "all": 0.8}


def test_toy_v2_folder_is_small_fp16_at_a_32x32_latent_with_its_own_settings() -> None:
    assert MODEL_ALIASES["toy-v2"] == TOY_V2_MODEL_DIR
    unet = json.loads((TOY_V2_MODEL_DIR / "unet" / "config.json").read_text())
    assert unet["sample_size"] == 32
    weights = sorted(TOY_V2_MODEL_DIR.glob("*/*.safetensors"))
    assert len(weights) == 3 and sum(w.stat().st_size for w in weights) < 10 * 2**20
    for path in weights:
        assert {t.dtype for t in load_file(path).values()} == {torch.float16}, path
    settings = model_defaults("toy-v2")
    assert settings["pnp"]["residual_blocks"] == [2]  # v2's first 8x8 layer, not v1's 4
    # where the background follows the text the subject-aware default is plain PnP on v2
    assert settings["weaken"]["background"] == "keep"
    assert settings["pnp"]["background_weight"] == 1.0
    assert settings["mask"]["sam_model"] == "toy"


def test_toy_v2_text_to_image_follows_the_caption() -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    pipe = load_toy_pipeline(TOY_V2_MODEL_DIR)
    specs = sample_specs(_N_SAMPLES, seed=_SPEC_SEED)
    scores, images = generation_accuracy(pipe, specs, seed=0, cfg=GenerationConfig(steps=20))
    assert images.shape == (_N_SAMPLES, IMAGE_SIZE, IMAGE_SIZE, 3)
    for label, floor in _MIN_ACCURACY.items():
        assert scores[label] >= floor, scores


# A fixed colour + background pair (seed 11, pair 4): through the alias, with v2's
# settings, 10 steps: colour and
# background followed, shape IoU 0.93 (of the first six pairs, 5 follow both, IoUs 0.27-0.94).
_PAIR = toy_pairs(5, 11)[4]


def test_toy_v2_edits_through_its_alias_with_its_own_settings() -> None:
    editor = PnPEditor.from_pretrained(ModelConfig(model="toy-v2", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    cfg = editor.default_config()
    assert cfg.pnp.residual_blocks == (2,)
    cfg.pnp.steps = 10
    cfg.pnp.source_prompt = _PAIR.source.caption
    mask = _PAIR.subject.astype(np.float32)
    result = editor.edit(Image.fromarray(_PAIR.image), [_PAIR.target.caption], cfg, mask=mask)
    assert result.config.pnp.background_intent == "follow"
    assert result.config.pnp.residual_blocks == (2,)
    scores = score_toy_edit(_PAIR, np.asarray(result.images[0]))
    assert scores["color"] == 1.0 and scores["background"] == 1.0, scores
    assert scores["iou"] > 0.7, scores
