"""Parity with pnp-diffusers, pinned without the port: its grids, its inversion and its batch.

Facts verified by running MichalGeyer/pnp-diffusers (diffusers 0.17.1, transformers 4.30.2)
beside this package on one tiny model, image and prompt (see the notes on parity): the port's
999-step inversion and ours agree to 7.6e-6 (fp32) at every kept timestep, and its PnP sampling
and ours to 9.5e-14 in float64. Here the port's arithmetic is re-derived from first principles:
- inversion: the port's ``DDIMScheduler.set_timesteps(999)`` grid reversed (t = 1..999); at each
  t the noise is predicted *at t* from the latent at the previous grid timestep, whose
  alpha-bar is ``alphas_cumprod[0]`` for the first step (``final_alpha_cumprod``, because
  ``set_alpha_to_one`` is False);
- sampling: every step runs the batch ``[x_t (source), x, x]`` with text
  ``[emb(""), emb(negative), emb(prompt)]``, keeping the source row even after both thresholds
  (we drop it there, which must not change the result).
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, apply_preset
from pnpsam.core.injection import BatchLayout, FeatureInjector, InjectionStep, find_injection_sites
from pnpsam.core.inversion import ddim_invert, inversion_timesteps
from pnpsam.models.loading import inverse_scheduler_for
from pnpsam.models.tiny import SD_SCHEDULER


def _port_alpha_before(alphas: torch.Tensor, grid: list[int], index: int) -> torch.Tensor:
    """Alpha-bar of the latent a port inversion step starts from (``final_alpha_cumprod`` first)."""
    return alphas[grid[index - 1]] if index > 0 else alphas[0]


def _port_inversion_step(
    eps: torch.Tensor, latent: torch.Tensor, a_t: torch.Tensor, a_before: torch.Tensor
) -> torch.Tensor:
    """pnp-diffusers' ``ddim_inversion`` update, written from the DDIM equations."""
    pred_x0 = (latent - (1 - a_before) ** 0.5 * eps) / a_before**0.5
    return a_t**0.5 * pred_x0 + (1 - a_t) ** 0.5 * eps


def test_preset_grids_are_the_ports() -> None:
    """999 inversion steps visit t = 1..999; the 50 kept ones are 981, 961, ..., 1."""
    cfg = apply_preset(EditConfig(), "pnp-diffusers")
    sampler = DDIMScheduler(**SD_SCHEDULER)
    inverse = inverse_scheduler_for(sampler)
    assert inversion_timesteps(inverse, cfg.inversion.steps) == list(range(1, 1000))
    sampler.set_timesteps(cfg.pnp.steps)
    assert [int(t) for t in sampler.timesteps] == list(range(981, 0, -20))
    assert (cfg.pnp.residual_steps, cfg.pnp.attention_steps) == (40, 25)
    assert cfg.pnp.negative_prompt == "ugly, blurry, black, low res, unrealistic"
    assert (cfg.pnp.source, cfg.pnp.start, cfg.inversion.prompt) == ("inversion", "inversion", "")


@pytest.mark.parametrize("steps", [999, 50, 10])
def test_inverse_scheduler_step_is_the_ports_update(steps: int) -> None:
    inverse = inverse_scheduler_for(DDIMScheduler(**SD_SCHEDULER))
    grid = inversion_timesteps(inverse, steps)
    inverse.set_timesteps(steps)  # inversion_timesteps reads a copy: the stepper sets its own
    alphas = inverse.alphas_cumprod
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    for index in (0, 1, len(grid) // 2, len(grid) - 1):
        eps = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
        ours = inverse.step(eps, grid[index], latent).prev_sample
        a_before = _port_alpha_before(alphas, grid, index)
        port = _port_inversion_step(eps, latent, alphas[grid[index]], a_before)
        torch.testing.assert_close(ours, port, rtol=0, atol=1e-12)


def test_inversion_on_the_tiny_model_is_the_ports_loop(editor: PnPEditor) -> None:
    pipe = editor.pipeline
    generator = torch.Generator().manual_seed(0)
    clean = torch.randn(1, 4, 16, 16, generator=generator)
    empty = pipe.encode_text([""])
    grid = inversion_timesteps(pipe.inverse_scheduler, 10)
    ours = ddim_invert(pipe.unet, pipe.inverse_scheduler, clean, empty, 10, grid)
    alphas = pipe.scheduler.alphas_cumprod
    latent = clean
    with torch.no_grad():
        for index, t in enumerate(grid):
            eps = pipe.unet(latent, t, encoder_hidden_states=empty).sample
            a_before = _port_alpha_before(alphas, grid, index)
            latent = _port_inversion_step(eps, latent, alphas[t], a_before)
            torch.testing.assert_close(ours.at(t), latent, rtol=0, atol=1e-5)
    assert (latent - clean).abs().max() > 0.5  # the steps moved the latent far: not a no-op


def test_sampling_equals_the_ports_batch_that_keeps_the_source_row(
    editor: PnPEditor, small_config: EditConfig, photo: Image.Image
) -> None:
    """Dropping the source row after both thresholds gives the port's result (it keeps it)."""
    small_config.inversion.steps = small_config.pnp.steps = 5
    cfg = small_config.pnp  # 5 steps: residual 4, attention 2, then 1 step without a source
    prompt = "a red robot"
    inversion = editor.invert(photo, small_config)
    ours = editor.edit(inversion, prompt, small_config).latents
    pipe = editor.pipeline
    inverted = inversion.latents
    text = torch.cat([pipe.encode_text([p]) for p in ("", cfg.negative_prompt, prompt)])
    timesteps = pipe.sampling_timesteps(cfg.steps)
    sites = find_injection_sites(pipe.unet, cfg.residual_blocks, cfg.attention_blocks)
    x = inverted.at(timesteps[0])
    layout = BatchLayout(num_prompts=1, has_source=True)
    with FeatureInjector(pipe.unet, sites) as injector, torch.no_grad():
        for index, t in enumerate(timesteps):
            state = InjectionStep(
                index, t, index < cfg.residual_steps, index < cfg.attention_steps, layout
            )
            with injector.step(state, (x.shape[-2], x.shape[-1])):
                batch = torch.cat([inverted.at(t), x, x])
                noise = pipe.unet(batch, t, encoder_hidden_states=text).sample
            _, uncond, cond = noise.chunk(3)
            x = pipe.scheduler.step(uncond + cfg.guidance * (cond - uncond), t, x).prev_sample
    assert ours is not None
    assert cfg.residual_steps < cfg.steps  # some steps ran without the source row
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)
