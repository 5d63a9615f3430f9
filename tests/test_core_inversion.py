"""DDIM inversion: the grid matches sampling, and invert-then-reconstruct recovers the latent."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from pnpsam.api import PnPEditor
from pnpsam.config import InversionConfig, PnPConfig
from pnpsam.core.inversion import TimestepGridError, inversion_timesteps
from pnpsam.models.tiny import SD_SCHEDULER


@pytest.mark.parametrize(("inversion_steps", "sampling_steps"), [(50, 50), (999, 50), (100, 50)])
def test_inversion_grid_contains_sampling_grid(inversion_steps: int, sampling_steps: int) -> None:
    forward = DDIMScheduler(**SD_SCHEDULER)
    forward.set_timesteps(sampling_steps)
    grid = inversion_timesteps(DDIMInverseScheduler(**SD_SCHEDULER), inversion_steps)
    sampling = [int(t) for t in forward.timesteps]
    assert sampling[0] == 981 and sampling[-1] == 1
    assert set(sampling) <= set(grid)
    if inversion_steps == sampling_steps:
        assert grid == sampling[::-1]  # 1, 21, ..., 981: the same points, ascending


def test_mismatched_grid_is_refused_before_any_unet_call(editor: PnPEditor, photo) -> None:
    cfg = editor.default_config()
    cfg.preprocess.size = 32
    cfg.inversion.steps = 30  # grid 1, 34, 67, ... lacks 981, 961, ...
    cfg.pnp.steps = 50
    with pytest.raises(
        TimestepGridError, match=r"30-step inversion .* lacks sampling timesteps \[21, 41"
    ):
        editor.invert(photo, cfg)


def _reconstruct(editor: PnPEditor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain DDIM (no guidance, empty prompt) from ``start`` down to t=0."""
    pipe = editor.pipeline
    empty = pipe.encode_text([""])
    pipe.scheduler.set_timesteps(steps)
    latent = start
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:
            noise = pipe.unet(latent, t, encoder_hidden_states=empty).sample
            latent = pipe.scheduler.step(noise, t, latent).prev_sample
    return latent


def test_invert_then_reconstruct_recovers_the_latent(editor: PnPEditor, photo) -> None:
    cfg = editor.default_config()
    cfg.preprocess.size = 32
    errors = {}
    for steps in (10, 50):
        cfg.inversion, cfg.pnp = InversionConfig(steps=steps), PnPConfig(steps=steps)
        inversion = editor.invert(photo, cfg).latents
        x_t = inversion.at(editor.pipeline.sampling_timesteps(steps)[0])
        back = _reconstruct(editor, x_t, steps)
        errors[steps] = torch.mean((back - inversion.clean) ** 2).item()
    other = _reconstruct(editor, torch.randn_like(inversion.clean), 50)
    baseline = torch.mean((other - inversion.clean) ** 2).item()
    assert errors[50] < errors[10] < 0.05 * baseline, (errors, baseline)
    assert errors[50] < 1e-2 * baseline
