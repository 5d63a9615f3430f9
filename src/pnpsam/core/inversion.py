"""DDIM inversion (eta 0) that keeps the latent at every sampling timestep, in memory.

The step math is diffusers' ``DDIMInverseScheduler``: the noise predicted at timestep ``t`` from
the latent at the previous (lower) timestep moves the latent up to ``t`` — exactly the
hand-written inversion of pnp-diffusers, which runs it with 999 steps.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMInverseScheduler, UNet2DConditionModel

from pnpsam.core.callbacks import EditStopped, StepCallback, changed_latents
from pnpsam.core.conditioning import AddedConditions, unet_inputs
from pnpsam.errors import InputError


class TimestepGridError(InputError):
    """The inversion grid does not contain every sampling timestep."""


@dataclass
class InvertedLatents:
    """The inversion of one image, reusable for any number of prompts.

    Attributes:
        clean: (1, C, h, w) latent of the image itself (VAE posterior mean x scaling factor).
        by_timestep: timestep -> (1, C, h, w) inverted latent x_t, for every kept timestep.
        inversion_steps: number of inversion steps that produced it.
        source_embedding: (1, L, D) text embedding the inversion was conditioned on; the
            source stream of the edit uses the same one.
        source_added: SDXL's added conditioning (pooled text, time ids) of that row, or None.
    """

    clean: torch.Tensor
    by_timestep: dict[int, torch.Tensor]
    inversion_steps: int
    source_embedding: torch.Tensor
    source_added: AddedConditions | None = None

    def at(self, timestep: int) -> torch.Tensor:
        try:
            return self.by_timestep[int(timestep)]
        except KeyError:
            raise TimestepGridError(
                f"timestep {int(timestep)} was not kept by the inversion "
                f"({self.inversion_steps} steps kept {sorted(self.by_timestep)[:4]}...)"
            ) from None

    def check_grid(self, timesteps: Sequence[int]) -> None:
        """Raise ``TimestepGridError`` naming the first sampling timestep that is missing."""
        missing = [int(t) for t in timesteps if int(t) not in self.by_timestep]
        if missing:
            raise TimestepGridError(
                f"the {self.inversion_steps}-step inversion did not keep sampling timesteps "
                f"{missing[:5]}; choose inversion steps whose grid contains the sampling grid "
                "(e.g. equal to the sampling steps, a multiple of them, or 999)"
            )


def inversion_timesteps(scheduler: DDIMInverseScheduler, steps: int) -> list[int]:
    """The ascending timesteps an inversion with ``steps`` steps visits (``scheduler`` is left
    as it is: the grid comes from a copy)."""
    grid = copy.copy(scheduler)  # set_timesteps rebinds its attributes: a shallow copy will do
    grid.set_timesteps(steps)
    return [int(t) for t in grid.timesteps]


@torch.no_grad()
def ddim_invert(
    unet: UNet2DConditionModel,
    scheduler: DDIMInverseScheduler,
    clean_latent: torch.Tensor,
    text_embedding: torch.Tensor,
    steps: int,
    keep_timesteps: Sequence[int],
    callback: StepCallback | None = None,
    added: AddedConditions | None = None,
) -> InvertedLatents:
    """Invert ``clean_latent`` (1, C, h, w) with ``steps`` DDIM inverse steps, no guidance.

    The scheduler's ``prediction_type`` (epsilon or v) says what the UNet predicts; ``added``
    is SDXL's added conditioning of the (1-row) text embedding, given to every step.

    Keeps the latent reached at each timestep in ``keep_timesteps`` (the sampling grid); raises
    ``TimestepGridError`` before any UNet call if the inversion grid does not contain them.
    ``callback`` (``StepCallback``) runs after every step with ``"latents"``, the (1, C, h, w)
    latent reached, and ``"model_input"``, the one the UNet saw; it may raise ``EditStopped``.
    """
    grid = inversion_timesteps(scheduler, steps)
    keep = {int(t) for t in keep_timesteps}
    missing = sorted(keep - set(grid))
    if missing:
        raise TimestepGridError(
            f"a {steps}-step inversion visits timesteps {grid[:3]}...{grid[-2:]}, which lacks "
            f"sampling timesteps {missing[:5]}; use inversion steps equal to the sampling steps, "
            "a multiple of them, or 999"
        )
    scheduler.set_timesteps(steps)
    latent = clean_latent
    kept: dict[int, torch.Tensor] = {}
    # Steps above the highest kept timestep feed nothing (999 steps: 18 of them), so stop there.
    last = max(keep) if keep else grid[-1]
    # the UNet gets each timestep as a tensor already on the latent's device (one copy here,
    # not a blocking host-to-device copy per step); the scheduler and callback get the int
    on_device = scheduler.timesteps.to(clean_latent.device)
    conditioning = unet_inputs(text_embedding, added)  # built once, the same every step
    for index, t in enumerate(grid[: grid.index(last) + 1]):
        model_input = latent
        noise = unet(model_input, on_device[index], **conditioning).sample
        latent = scheduler.step(noise, t, latent).prev_sample
        if callback is not None:
            try:
                returned = callback(index, t, {"latents": latent, "model_input": model_input})
            except EditStopped as stop:
                stop.step, stop.timestep = index, t
                raise
            if returned is not None:
                latent = changed_latents(returned, latent)
        if t in keep:
            kept[t] = latent
    return InvertedLatents(
        clean=clean_latent,
        by_timestep=kept,
        inversion_steps=steps,
        source_embedding=text_embedding,
        source_added=added,
    )
