"""The shipped toy v2 (32x32 latent, ``--model toy-v2``): a real SD folder that meets the
generation bar and edits with its own settings (residual block 2, its first 8x8 layer)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import MODEL_ALIASES, TOY_V2_MODEL_DIR, ModelConfig, model_defaults
from pnpsam.toyworld.pairs import score_toy_edit, toy_pairs


def test_toy_v2_is_an_alias_at_a_32x32_latent_with_its_own_settings() -> None:
    """(Its folder's format and its text-to-image floors: ``test_toyworld_generation``.)"""
    assert MODEL_ALIASES["toy-v2"] == TOY_V2_MODEL_DIR
    unet = json.loads((TOY_V2_MODEL_DIR / "unet" / "config.json").read_text())
    assert unet["sample_size"] == 32
    settings = model_defaults("toy-v2")
    assert settings["pnp"]["residual_blocks"] == [2]  # v2's first 8x8 layer, not v1's 4
    # where the background follows the text the subject-aware default is plain PnP on v2
    assert settings["weaken"]["background"] == "keep"
    assert settings["pnp"]["background_weight"] == 1.0
    assert settings["mask"]["sam_model"] == "toy"


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
