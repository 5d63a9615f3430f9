"""The PnP sampling loop: guided DDIM sampling with a source stream that feeds injected features.

Per step, the UNet batch is ``[source, uncond x k, cond x k]`` (see ``BatchLayout``) while any
injection is active, and ``[uncond x k, cond x k]`` afterwards: once both thresholds have passed
the source stream has nothing left to give, so it is dropped. With both thresholds 0 this is
exactly plain DDIM sampling with classifier-free guidance from the start latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel

from pnpsam.config import PnPConfig
from pnpsam.core.injection import BatchLayout, FeatureInjector, InjectionStep
from pnpsam.core.inversion import InvertedLatents

# callback(step_index, timestep, latents (k, C, h, w)) after every sampling step
SamplingCallback = Callable[[int, int, torch.Tensor], None]
# latents_fn(step_index, latents (k, C, h, w)) -> latents: may replace the guided latents
LatentsStep = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TextConditions:
    """Text embeddings for one sampling run: source (1, L, D), uncond and cond (k, L, D)."""

    source: torch.Tensor
    uncond: torch.Tensor
    cond: torch.Tensor

    @property
    def num_prompts(self) -> int:
        return self.cond.shape[0]

    def batch(self, layout: BatchLayout) -> torch.Tensor:
        rows = [self.source] if layout.has_source else []
        return torch.cat([*rows, self.uncond, self.cond], dim=0)


def injection_schedule(
    cfg: PnPConfig, timesteps: list[int], num_prompts: int, source_row: bool = True
) -> list[InjectionStep]:
    """Which features are injected at each sampling step (leading steps, see ``PnPConfig``).

    ``source_row=False``: injected features are replayed (``SourceFeatures``), so no batch has
    a source row.
    """
    steps = []
    for index, t in enumerate(timesteps):
        residual = index < cfg.residual_steps
        attention = index < cfg.attention_steps
        layout = BatchLayout(num_prompts, has_source=(residual or attention) and source_row)
        steps.append(InjectionStep(index, int(t), residual, attention, layout))
    return steps


def keep_background(
    inverted: InvertedLatents, timesteps: list[int], subject: torch.Tensor
) -> LatentsStep:
    """Blended latent diffusion with the source's own trajectory (``background_intent`` keep).

    Returns ``after_step(index, latents)``: after sampling step ``index`` (which reached the
    next timestep of ``timesteps``, or x_0 after the last) the latents outside the subject
    are the source's inversion latents at that timestep (``inverted.clean`` after the last),
    so the background ends as the source's own latent; inside, the generation's. ``subject``
    (1, 1, H, W) in [0, 1] is area-resized to the latents' own grid (soft edges blend).
    Self-contained on purpose: a per-step callback can call it as it is.
    """
    targets = [inverted.at(t) for t in timesteps[1:]] + [inverted.clean]

    def after_step(index: int, latents: torch.Tensor) -> torch.Tensor:
        inside = F.interpolate(subject.to(latents), size=latents.shape[-2:], mode="area")
        return torch.lerp(targets[index].to(latents), latents, inside)

    return after_step


@torch.no_grad()
def pnp_sample(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    injector: FeatureInjector,
    inverted: InvertedLatents,
    text: TextConditions,
    start_latent: torch.Tensor,
    cfg: PnPConfig,
    callback: SamplingCallback | None = None,
    progress: Callable[[int], object] | None = None,
    before_step: LatentsStep | None = None,
    after_step: LatentsStep | None = None,
) -> torch.Tensor:
    """Sample ``k`` edits of one image; returns the final latents (k, C, h, w).

    ``start_latent`` (1 or k, C, h, w) is x_T of the guided rows (the inverted latent or seeded
    noise). The source row is the inverted x_t at every step (``cfg.source == "inversion"``) or
    its own DDIM reconstruction from x_T (``"reconstruction"``). The injector must be installed;
    with ``injector.replay`` the source row is left out and its recorded features injected.
    ``before_step(index, latents)`` may replace the guided latents (k, C, h, w) before a step
    (e.g. re-noise their background after the first steps); ``after_step(index, latents)``
    may replace them after it (e.g. ``keep_background``), before ``callback`` sees them.
    """
    scheduler.set_timesteps(cfg.steps, device=start_latent.device)
    timesteps = [int(t) for t in scheduler.timesteps]
    inverted.check_grid(timesteps)
    k = text.num_prompts
    latents = start_latent.expand(k, -1, -1, -1) * scheduler.init_noise_sigma
    source = inverted.at(timesteps[0])
    latent_hw = (latents.shape[-2], latents.shape[-1])
    for state in injection_schedule(cfg, timesteps, k, source_row=not injector.replay):
        t = state.timestep
        layout = state.layout
        if before_step is not None:
            latents = before_step(state.index, latents)
        if layout.has_source and cfg.source == "inversion":
            source = inverted.at(t)
        rows = [source] if layout.has_source else []
        model_input = torch.cat([*rows, latents, latents], dim=0)
        model_input = scheduler.scale_model_input(model_input, t)
        with injector.step(state, latent_hw):
            noise = unet(model_input, t, encoder_hidden_states=text.batch(layout)).sample
        noise_uncond, noise_cond = noise[layout.uncond], noise[layout.cond]
        guided = noise_uncond + cfg.guidance * (noise_cond - noise_uncond)
        latents = scheduler.step(guided, t, latents).prev_sample
        if after_step is not None:
            latents = after_step(state.index, latents)
        if layout.has_source and cfg.source == "reconstruction":
            source = scheduler.step(noise[layout.source], t, source).prev_sample
        if callback is not None:
            callback(state.index, t, latents)
        if progress is not None:
            progress(1)
    return latents
