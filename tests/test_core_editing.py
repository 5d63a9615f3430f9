"""Editing contracts: prompts batched equal prompts alone; modes; inputs that must be refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pnpsam.api import PnPEditor, unet_evaluations
from pnpsam.config import ConfigError, EditConfig, PnPConfig

PROMPTS = ["a red robot", "a blue dog", "a photo of snow"]


@pytest.mark.parametrize("overrides", [{}, {"start": "noise", "source": "reconstruction"}])
def test_k_prompts_in_one_call_equal_k_single_calls(
    editor: PnPEditor, small_config: EditConfig, photo, overrides
) -> None:
    batched = editor.edit(photo, PROMPTS[:2], small_config, **overrides)
    assert len(batched.images) == 2
    for i, prompt in enumerate(PROMPTS[:2]):
        single = editor.edit(photo, prompt, small_config, **overrides)
        torch.testing.assert_close(batched.latents[i : i + 1], single.latents, atol=1e-4, rtol=0)
        diff = np.abs(np.asarray(batched.images[i], int) - np.asarray(single.images[0], int))
        assert diff.max() <= 1


def test_prompt_chunks_equal_one_batch(editor: PnPEditor, small_config: EditConfig, photo):
    whole = editor.edit(photo, PROMPTS, small_config)
    chunked = editor.edit(photo, PROMPTS, small_config, prompt_batch_size=2)
    torch.testing.assert_close(whole.latents, chunked.latents, atol=1e-4, rtol=0)


def test_inversion_is_reused_across_edits(editor: PnPEditor, small_config: EditConfig, photo):
    inversion = editor.invert(photo, small_config)
    calls = []
    handle = editor.pipeline.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        first = editor.edit(inversion, "a red robot", small_config)
        second = editor.edit(inversion, "a blue dog", small_config)
    finally:
        handle.remove()
    assert len(calls) == 2 * 10  # sampling only: no inversion step was re-run
    assert first.source is inversion.image and second.image_sha256 == inversion.image_sha256


def test_start_modes_differ_and_noise_follows_seed(editor, small_config, photo) -> None:
    inv = editor.edit(photo, "a red robot", small_config).latents
    noise0 = editor.edit(photo, "a red robot", small_config, start="noise", seed=0).latents
    noise0b = editor.edit(photo, "a red robot", small_config, start="noise", seed=0).latents
    noise1 = editor.edit(photo, "a red robot", small_config, start="noise", seed=1).latents
    assert torch.equal(noise0, noise0b)
    assert not torch.allclose(noise0, noise1)
    assert not torch.allclose(inv, noise0)


def test_source_modes_agree_when_the_reconstruction_is_exact(editor, small_config, photo):
    """Reconstruction and inversion sources are close (the tiny UNet inverts well) but not equal."""
    a = editor.edit(photo, "a red robot", small_config, source="inversion").latents
    b = editor.edit(photo, "a red robot", small_config, source="reconstruction").latents
    assert not torch.equal(a, b)
    assert (a - b).abs().max().item() < 0.2 * a.abs().max().item()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"pnp_f_t": 1.5}, "pnp_f_t"),
        ({"pnp_attn_t": -0.1}, "pnp_attn_t"),
        ({"blend_alpha": 2.0}, "blend_alpha"),
        ({"injection": "swap"}, "injection"),
        ({"source": "magic"}, "source"),
    ],
)
def test_bad_settings_are_named(editor, small_config, photo, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        editor.edit(photo, "a red robot", small_config, **overrides)


def test_empty_prompt_list_is_refused(editor, small_config, photo) -> None:
    with pytest.raises(ValueError, match="prompts is empty"):
        editor.edit(photo, [], small_config)


def test_unet_evaluation_count(editor: PnPEditor) -> None:
    cfg = PnPConfig()
    # 50 inversion + 40 source rows + 2 x 50 guided rows per prompt
    assert unet_evaluations(cfg, 50, 1) == 50 + 40 + 100
    assert unet_evaluations(cfg, 50, 4) == 50 + 40 + 400
    assert editor.pipeline.inversion_calls(50, 50) == 50
    assert editor.pipeline.inversion_calls(999, 50) == 981  # nothing above t=981 is read


def test_non_square_image_keeps_aspect(editor, small_config) -> None:
    wide = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 80, 3), np.uint8))
    result = editor.edit(wide, "a red robot", small_config)
    assert result.images[0].size == (64, 32)
    assert result.latents is not None and result.latents.shape[-2:] == (16, 32)
