"""The step callback: it observes without changing a bit, changes latents, and stops an edit
cleanly (nothing of the edit left on the UNet or in the editor's stores)."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from pnpsam.api import EditStopped, PnPEditor
from pnpsam.config import EditConfig
from pnpsam.core.callbacks import InjectionRecorder, RowCounter, StepCallbacks, StepTensors


def _subject_mask(width: int = 32, height: int = 32) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    mask[:, : width // 2] = 1.0
    return mask


def test_a_callback_that_only_observes_changes_nothing(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    inversion = editor.invert(photo, small_config)
    plain = editor.edit(inversion, ["a red robot", "a dog"], small_config)
    seen: list[tuple[int, int, tuple[int, ...]]] = []

    def look(step: int, timestep: int, tensors: StepTensors) -> None:
        seen.append((step, timestep, tuple(tensors["latents"].shape)))
        assert tensors["noise_pred"].shape == tensors["latents"].shape
        assert tensors["inverted_latents"].shape[1:] == tensors["latents"].shape[1:]

    recorder, rows = InjectionRecorder(), RowCounter()
    observed = editor.edit(
        inversion,
        ["a red robot", "a dog"],
        small_config,
        callback=StepCallbacks([look, recorder, rows]),
    )
    assert torch.equal(observed.latents, plain.latents)
    timesteps = editor.pipeline.sampling_timesteps(10)
    assert seen == [(i, t, (2, 4, 16, 16)) for i, t in enumerate(timesteps)]
    assert recorder.events and {e.step.index for e in recorder.events} == set(range(8))
    # 8 steps with the source row (1 + 2 x 2 rows), 2 without (2 x 2 rows)
    assert rows.rows == observed.unet_evaluations == 8 * 5 + 2 * 4


def test_a_callback_that_changes_latents_changes_the_result(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    inversion = editor.invert(photo, small_config)
    plain = editor.edit(inversion, "a red robot", small_config)
    last = small_config.pnp.steps - 1
    chosen = torch.full_like(plain.latents, 0.25)

    def replace_last(step: int, timestep: int, tensors: StepTensors) -> StepTensors | None:
        return {"latents": chosen} if step == last else None

    replaced = editor.edit(inversion, "a red robot", small_config, callback=replace_last)
    assert torch.equal(replaced.latents, chosen)  # what the callback returned is the result
    assert not np.array_equal(np.asarray(replaced.images[0]), np.asarray(plain.images[0]))

    def halve_at_5(step: int, timestep: int, tensors: StepTensors) -> StepTensors | None:
        return {"latents": tensors["latents"] * 0.5} if step == 5 else None

    halved = editor.edit(inversion, "a red robot", small_config, callback=halve_at_5)
    assert (halved.latents - plain.latents).abs().max() > 1e-3  # later steps carried it on


def test_a_callback_keeps_the_source_background_blended_latent_diffusion(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    """The documented use: after every step, the background latents are the inversion's at
    the same noise level, so the final background is the source's clean latent exactly."""
    small_config.weaken.background = "keep"
    inversion = editor.invert(photo.resize((32, 32)), small_config, mask=_subject_mask())
    subject = torch.zeros(1, 1, 16, 16)
    subject[..., :8] = 1.0

    def keep_background(step: int, timestep: int, tensors: StepTensors) -> StepTensors:
        return {"latents": torch.lerp(tensors["inverted_latents"], tensors["latents"], subject)}

    kept = editor.edit(inversion, "a red robot", small_config, callback=keep_background)
    clean = inversion.latents.clean
    assert torch.equal(kept.latents[..., 8:], clean[..., 8:].expand_as(kept.latents[..., 8:]))
    assert not torch.allclose(kept.latents[..., :8], clean[..., :8], atol=1e-3)


def test_a_callback_that_returns_bad_latents_is_refused(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    inversion = editor.invert(photo, small_config)

    def one_channel(step: int, timestep: int, tensors: StepTensors) -> StepTensors:
        return {"latents": tensors["latents"][:, :1]}

    with pytest.raises(ValueError, match="shape"):
        editor.edit(inversion, "x", small_config, callback=one_channel)
    with pytest.raises(ValueError, match="only 'latents'"):
        editor.edit(inversion, "x", small_config, callback=lambda s, t, x: {"noise_pred": 0})


@pytest.mark.parametrize("stop_at", [0, 3])
def test_a_stop_at_step_k_ends_after_k_plus_one_steps_and_frees_the_edit(
    editor: PnPEditor, small_config: EditConfig, photo, stop_at: int
) -> None:
    inversion = editor.invert(photo, small_config)
    unet = editor.pipeline.unet
    processors = {name: type(p) for name, p in unet.attn_processors.items()}
    budget = editor.source_features.max_bytes
    editor.source_features.max_bytes = 1 << 30  # the editor keeps source features: not a part
    steps: list[int] = []
    last_latents: list[weakref.ref[torch.Tensor]] = []

    def stop(step: int, timestep: int, tensors: StepTensors) -> None:
        steps.append(step)
        if step == stop_at:
            last_latents.append(weakref.ref(tensors["latents"]))
            raise EditStopped("cancelled")

    try:
        with editor.pipeline.count_unet_rows() as counted, pytest.raises(EditStopped) as stopped:
            editor.edit(inversion, ["a red robot", "a dog"], small_config, callback=stop)
        assert steps == list(range(stop_at + 1))
        assert counted.calls == stop_at + 1  # UNet calls: exactly the steps that ran
        assert stopped.value.step == stop_at
        assert stopped.value.timestep == editor.pipeline.sampling_timesteps(10)[stop_at]
        assert str(stopped.value).startswith(f"cancelled after step {stop_at}")
        assert len(editor.source_features) == 0  # the part recorded is not kept
        # the processors and hooks are gone, and the sampler's tensors with them
        assert {name: type(p) for name, p in unet.attn_processors.items()} == processors
        assert not any(m._forward_hooks for m in unet.modules())
        gc.collect()
        assert last_latents[0]() is None
        # the next edit runs as if the stopped one had never been
        again = editor.edit(inversion, "a red robot", small_config)
        editor.source_features.max_bytes = 0
        editor.source_features.clear()
        fresh = editor.edit(inversion, "a red robot", small_config)
        assert torch.equal(again.latents, fresh.latents)
    finally:
        editor.source_features.max_bytes = budget
        editor.source_features.clear()


def test_the_inversion_runs_the_step_callback_too(editor: PnPEditor, small_config, photo) -> None:
    """``PnPPipeline.invert`` calls it after every inversion step; a stop ends it there."""
    image = torch.from_numpy(np.asarray(photo.resize((32, 32)), np.float32) / 127.5 - 1.0)
    image = image.permute(2, 0, 1)[None]
    rows = RowCounter()
    inverted = editor.pipeline.invert(image, small_config.inversion, 10, rows)
    assert rows.calls == rows.rows == 10 and len(inverted.by_timestep) == 10

    def stop(step: int, timestep: int, tensors: StepTensors) -> None:
        if step == 2:
            raise EditStopped()

    with pytest.raises(EditStopped) as stopped:
        editor.pipeline.invert(image, small_config.inversion, 10, stop)
    assert stopped.value.step == 2
