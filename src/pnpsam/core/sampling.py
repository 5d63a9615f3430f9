"""The PnP sampling loop: guided DDIM sampling with a source stream that feeds injected features.

Per step, the UNet batch is ``[source, uncond x k, cond x k]`` (see ``BatchLayout``) while any
injection is active, and ``[uncond x k, cond x k]`` afterwards: once both thresholds have passed
the source stream has nothing left to give, so it is dropped. With both thresholds 0 this is
exactly plain DDIM sampling with classifier-free guidance from the start latent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from pnpsam.config import PnPConfig
from pnpsam.core.callbacks import EditStopped, StepCallback, changed_latents, tensor_inputs
from pnpsam.core.conditioning import AddedConditions, unet_inputs
from pnpsam.core.features import FeatureId, needed_features
from pnpsam.core.injection import (
    BatchLayout,
    FeatureInjector,
    InjectionEvent,
    InjectionSites,
    InjectionStep,
)
from pnpsam.core.inversion import InvertedLatents


@dataclass(frozen=True)
class TextConditions:
    """Text embeddings for one sampling run: source (1, L, D), uncond and cond (k, L, D); for
    SDXL also each group's added conditioning (pooled text, time ids: 1, k and k rows)."""

    source: torch.Tensor
    uncond: torch.Tensor
    cond: torch.Tensor
    source_added: AddedConditions | None = None
    uncond_added: AddedConditions | None = None
    cond_added: AddedConditions | None = None

    @property
    def num_prompts(self) -> int:
        return self.cond.shape[0]

    def batch(self, layout: BatchLayout) -> torch.Tensor:
        rows = [self.source] if layout.has_source else []
        return torch.cat([*rows, self.uncond, self.cond], dim=0)

    def unet_inputs(self, layout: BatchLayout) -> dict[str, Any]:
        """The UNet's conditioning keywords for a batch of ``layout``, row by row."""
        if self.uncond_added is None or self.cond_added is None:
            return unet_inputs(self.batch(layout), None)
        parts = [self.uncond_added, self.cond_added]
        if layout.has_source:
            if self.source_added is None:
                raise RuntimeError("the source row has no added conditioning (SDXL)")
            parts.insert(0, self.source_added)
        return unet_inputs(self.batch(layout), AddedConditions.cat(parts))


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


@dataclass(frozen=True)
class SamplingPlan:
    """What one edit's sampling does, decided once before its first UNet call
    (``PnPPipeline.plan``): nothing here changes while the edit runs.

    ``cfg``: the validated PnP settings, with the subject fields concrete; ``timesteps``: the
    sampling grid, descending as the scheduler visits it; ``sites``: the module names of the
    injected layers.
    """

    cfg: PnPConfig
    timesteps: tuple[int, ...]
    sites: InjectionSites

    def schedule(self, num_prompts: int, source_row: bool = True) -> list[InjectionStep]:
        """The injection of every step for ``num_prompts`` prompts (``injection_schedule``)."""
        return injection_schedule(self.cfg, list(self.timesteps), num_prompts, source_row)

    @cached_property
    def needed(self) -> set[FeatureId]:
        """The source-row features the injections read, by (timestep, kind, block)."""
        return needed_features(self.schedule(1), self.sites)


@torch.no_grad()
def pnp_sample(
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler,
    injector: FeatureInjector,
    inverted: InvertedLatents,
    text: TextConditions,
    start_latent: torch.Tensor,
    plan: SamplingPlan,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Sample ``k`` edits of one image; returns the final latents (k, C, h, w).

    ``start_latent`` (1 or k, C, h, w) is x_T of the guided rows (the inverted latent or seeded
    noise). The source row (the stream whose features are injected) is the inverted x_t at
    every step (``cfg.source == "inversion"``) or its own DDIM reconstruction from x_T
    (``"reconstruction"``). The injector must be installed;
    with ``injector.replay`` the source row is left out and its recorded features injected.
    ``callback`` (see ``StepCallback``) runs after every step: it may replace the latents the
    next step starts from, or raise ``EditStopped`` to end the run there.
    """
    cfg = plan.cfg
    # the sampler sets the grid of the scheduler it steps with; the plan already knows it
    scheduler.set_timesteps(cfg.steps, device=start_latent.device)
    # the UNet gets each timestep as a tensor already on the device: given a Python int it
    # would copy one to the device every step, and a blocking host-to-device copy waits for
    # the GPU; the scheduler gets the int (its step indexes a CPU table with it)
    on_device = scheduler.timesteps
    timesteps = [int(t) for t in on_device.tolist()]  # one device-to-host read, not one a step
    if timesteps != list(plan.timesteps):
        raise RuntimeError(f"the scheduler's grid {timesteps[:3]}... is not the plan's")
    inverted.check_grid(timesteps)
    k = text.num_prompts
    latents = start_latent.expand(k, -1, -1, -1) * scheduler.init_noise_sigma
    source_latent = inverted.at(timesteps[0])  # the source row: its features are injected
    latent_hw = (latents.shape[-2], latents.shape[-1])
    # each layout's conditioning, built once (a batch has a source row or not)
    conditioning: dict[bool, dict[str, Any]] = {}
    injected: list[InjectionEvent] = []  # this step's injections, for a callback that asks
    observe = "injected" in tensor_inputs(callback)
    if observe:
        injector.observers.append(lambda event: injected.append(event))
    try:
        for state in plan.schedule(k, source_row=not injector.replay):
            t = state.timestep
            layout = state.layout
            if layout.has_source and cfg.source == "inversion":
                source_latent = inverted.at(t)
            rows = [source_latent] if layout.has_source else []
            model_input = torch.cat([*rows, latents, latents], dim=0)
            model_input = scheduler.scale_model_input(model_input, t)
            if layout.has_source not in conditioning:
                conditioning[layout.has_source] = text.unet_inputs(layout)
            with injector.step(state, latent_hw):
                noise = unet(
                    model_input, on_device[state.index], **conditioning[layout.has_source]
                ).sample
            noise_uncond, noise_cond = noise[layout.uncond], noise[layout.cond]
            guided = noise_uncond + cfg.guidance * (noise_cond - noise_uncond)
            latents = scheduler.step(guided, t, latents).prev_sample
            if layout.has_source and cfg.source == "reconstruction":
                source_latent = scheduler.step(noise[layout.source], t, source_latent).prev_sample
            if callback is None:
                continue
            following = state.index + 1
            tensors = {
                "latents": latents,
                "noise_pred": guided,
                "model_input": model_input,
                "inverted_latents": (
                    inverted.at(timesteps[following])
                    if following < len(timesteps)
                    else inverted.clean
                ),
            }
            if observe:
                tensors["injected"] = list(injected)
                injected.clear()
            try:
                returned = callback(state.index, t, tensors)
            except EditStopped as stop:
                stop.step, stop.timestep = state.index, t
                raise
            if returned is not None:
                latents = changed_latents(returned, latents)
    finally:
        if observe:
            injector.observers.pop()
    return latents
