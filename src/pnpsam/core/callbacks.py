"""The step callback: one hook, called after every UNet step, that can observe, change and stop.

Modelled on diffusers' ``callback_on_step_end``: ``callback(step_index, timestep, tensors)``
runs after each step of the sampler (and of the inversion) with the step's tensors by name.
Progress bars, UNet row counting, the delayed background re-noising and any caller's hook are
all step callbacks; ``StepCallbacks`` runs several as one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from pnpsam.core.injection import InjectionEvent

StepTensors = dict[str, Any]
"""What a step callback is given after each step (diffusers' ``callback_kwargs``):

- ``"latents"``: (k, C, h, w) the guided latents the step produced (one row per prompt);
- ``"noise_pred"``: (k, C, h, w) the guided noise prediction the step used;
- ``"model_input"``: (rows, C, h, w) the UNet batch of the step (``[source?, uncond x k,
  cond x k]``; its rows are the step's UNet row-evaluations);
- ``"inverted_latents"``: (1, C, h, w) the inversion's latent at the noise level ``latents``
  are now at (the next sampling timestep; the clean latent after the last step);
- ``"injected"``: only for a callback whose ``tensor_inputs`` names it: the step's
  ``InjectionEvent``s (every injected tensor as the UNet used it).
"""
StepCallback = Callable[[int, int, StepTensors], StepTensors | None]
"""``callback(step_index, timestep, tensors)`` after every sampling step (diffusers'
``callback_on_step_end``). It may return ``{"latents": x}`` to replace the latents the next step
starts from (same shape), return None to change nothing, or raise ``EditStopped`` to end the
run after this step. A callback object may carry ``tensor_inputs`` (names of optional entries
of ``StepTensors`` it reads, as diffusers' ``PipelineCallback``).

For example, blended latent diffusion (keep the background of the source exactly): return
``{"latents": torch.lerp(tensors["inverted_latents"], tensors["latents"], subject)}`` with
``subject`` the (1, 1, h, w) subject mask at the latent grid.
"""


class EditStopped(Exception):
    """A step callback ended the run: raise it from the callback (``raise EditStopped()``).

    The sampler fills in ``step`` (the index of the last step that ran, 0 = first) and
    ``timestep`` and re-raises it; every ``with`` block of the edit exits on the way out
    (attention processors and hooks restored, progress bars closed), so the edit holds
    nothing afterwards and its caller gets this exception instead of a result.
    """

    def __init__(self, reason: str = "stopped by the step callback") -> None:
        super().__init__(reason)
        self.reason = reason
        self.step: int | None = None
        self.timestep: int | None = None

    def __str__(self) -> str:
        where = "" if self.step is None else f" after step {self.step} (timestep {self.timestep})"
        return f"{self.reason}{where}"


@dataclass
class StepCallbacks:
    """Several step callbacks run as one, in order: each sees the latents the previous returned.

    Its ``tensor_inputs`` are those of all of them.
    """

    callbacks: list[StepCallback] = field(default_factory=list)

    @property
    def tensor_inputs(self) -> tuple[str, ...]:
        return tuple(sorted({n for c in self.callbacks for n in tensor_inputs(c)}))

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> StepTensors | None:
        changed = False
        for callback in self.callbacks:
            returned = callback(step, timestep, tensors)
            if returned is not None:
                tensors = {**tensors, "latents": changed_latents(returned, tensors["latents"])}
                changed = True
        return {"latents": tensors["latents"]} if changed else None


def tensor_inputs(callback: StepCallback | None) -> tuple[str, ...]:
    """The optional ``StepTensors`` entries ``callback`` asks for (its ``tensor_inputs``)."""
    return tuple(getattr(callback, "tensor_inputs", ()))


def changed_latents(returned: StepTensors, latents: torch.Tensor) -> torch.Tensor:
    """The latents a step callback returned, checked: only ``"latents"``, of the same shape."""
    unknown = sorted(set(returned) - {"latents"})
    if unknown:
        raise ValueError(f"a step callback may return only 'latents'; it returned {unknown}")
    new = returned.get("latents", latents)
    if not isinstance(new, torch.Tensor) or new.shape != latents.shape:
        raise ValueError(
            f"a step callback returned latents of shape {getattr(new, 'shape', type(new))}; "
            f"expected {tuple(latents.shape)}"
        )
    return new


@dataclass
class KeepBackground:
    """A step callback for background intent "keep" (blended latent diffusion with the source's
    own trajectory): after every step the latents outside the subject are the source's
    inversion latents at the noise level they are now at (``inverted_latents``; the clean
    latent after the last step), so the background ends as the source's own latent; inside,
    the generation's. ``subject`` (1, 1, H, W) in [0, 1] is area-resized to the latents' grid
    (soft edges blend)."""

    subject: torch.Tensor

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> StepTensors:
        latents = tensors["latents"]
        inside = F.interpolate(self.subject.to(latents), size=latents.shape[-2:], mode="area")
        kept = torch.lerp(tensors["inverted_latents"].to(latents), latents, inside)
        return {"latents": kept}


@dataclass
class InjectionRecorder:
    """A step callback that keeps every injected tensor (``InjectionEvent``): for tests and
    debugging; it holds them all, so use it on small runs."""

    events: list[InjectionEvent] = field(default_factory=list)
    tensor_inputs: tuple[str, ...] = ("injected",)

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> None:
        self.events.extend(tensors["injected"])


@dataclass
class RowCounter:
    """A step callback counting UNet row-evaluations (batch rows summed over calls)."""

    rows: int = 0
    calls: int = 0

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> None:
        self.rows += int(tensors["model_input"].shape[0])
        self.calls += 1


@dataclass
class ProgressBar:
    """A step callback advancing a tqdm-like ``bar`` by one per denoising step (of a batch)."""

    bar: Any

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> None:
        self.bar.update(1)
