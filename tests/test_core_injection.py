"""Injection contracts: sites by name, the schedule, and what the guided rows receive."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionPipeline

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, PnPConfig
from pnpsam.core.callbacks import InjectionRecorder
from pnpsam.core.injection import (
    BatchLayout,
    FeatureInjector,
    InjectionEvent,
    InjectionSettings,
    InjectionSiteError,
    find_injection_sites,
)
from pnpsam.core.sampling import injection_schedule


def test_paper_sites_resolve_by_name(editor: PnPEditor) -> None:
    sites = find_injection_sites(editor.pipeline.unet, (4,), tuple(range(4, 12)))
    assert sites.residual == {4: "up_blocks.1.resnets.1.conv2"}
    assert sites.attention[4] == "up_blocks.1.attentions.1.transformer_blocks.0.attn1"
    assert sites.attention[11] == "up_blocks.3.attentions.2.transformer_blocks.0.attn1"
    assert sites.num_output_blocks == 12


@pytest.mark.parametrize(
    ("residual", "attention", "message"),
    [((12,), (), "does not exist"), ((), (2,), "no self-attention"), ((-1,), (), "-1")],
)
def test_missing_sites_are_named(editor: PnPEditor, residual, attention, message) -> None:
    with pytest.raises(InjectionSiteError, match=message):
        find_injection_sites(editor.pipeline.unet, residual, attention)


def test_misuse_raises_naming_what_is_missing(editor: PnPEditor) -> None:
    sites = find_injection_sites(editor.pipeline.unet, (4,), ())
    features = torch.zeros(2, 4, 8, 8)
    with pytest.raises(RuntimeError, match="residual injection at block 4 outside a sampling step"):
        FeatureInjector(editor.pipeline.unet, sites).inject(features, "residual", 4, (8, 8))
    with pytest.raises(ValueError, match="needs a subject mask"):
        InjectionSettings().mask_at(8, 8, like=features)


def test_schedule_rounds_like_the_port() -> None:
    cfg = PnPConfig()
    steps = injection_schedule(cfg, list(range(981, 0, -20)), 1)
    assert [s.timestep for s in steps][:2] == [981, 961]
    assert sum(s.residual for s in steps) == 40
    assert sum(s.attention for s in steps) == 25
    assert steps[39].residual and not steps[40].residual  # last residual step t = 201
    assert steps[39].timestep == 201 and steps[24].timestep == 501
    assert all(s.layout.has_source == (s.residual or s.attention) for s in steps)


def test_batch_layout_names_rows() -> None:
    layout = BatchLayout(num_prompts=3, has_source=True)
    assert (layout.size, layout.source, layout.uncond, layout.cond) == (
        7,
        slice(0, 1),
        slice(1, 4),
        slice(4, 7),
    )
    assert BatchLayout(2, has_source=False).guided == slice(0, 4)


def _record_edit(editor: PnPEditor, cfg: EditConfig, photo) -> list[InjectionEvent]:
    """Run one 2-prompt edit and record every injection event (the tensors the UNet uses)."""
    recorder = InjectionRecorder()
    inversion = editor.invert(photo, cfg)
    editor.pipeline.edit(inversion.latents, ["a red robot", "a blue dog"], cfg.pnp, None, recorder)
    return recorder.events


def test_guided_rows_carry_source_features_only_during_thresholds(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    events = _record_edit(editor, small_config, photo)
    residual_steps = sorted({e.step.index for e in events if e.kind == "residual"})
    query_steps = sorted({e.step.index for e in events if e.kind == "query"})
    assert residual_steps == list(range(8))  # int(10 * 0.8)
    assert query_steps == list(range(5))  # int(10 * 0.5)
    blocks = {e.block for e in events if e.kind == "key"}
    assert blocks == set(range(4, 12))
    for event in events:
        rows = event.features
        assert rows.shape[0] == 5  # source + 2 uncond + 2 cond
        assert torch.equal(rows[1:], rows[:1].expand_as(rows[1:])), event.kind


def test_features_differ_after_thresholds(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    """Observe raw conv2 output at a step after the residual threshold: rows differ there."""
    conv2 = editor.pipeline.unet.up_blocks[1].resnets[1].conv2
    seen: list[torch.Tensor] = []
    handle = conv2.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        editor.edit(photo, ["a red robot"], small_config)
    finally:
        handle.remove()
    assert len(seen) == 10
    during, after = seen[0], seen[9]
    assert during.shape[0] == 3 and after.shape[0] == 2  # source row dropped after thresholds
    assert not torch.allclose(after[0], after[1])  # uncond vs cond rows are free again


def test_injector_is_removed_after_use(editor: PnPEditor, small_config, photo) -> None:
    unet = editor.pipeline.unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    editor.edit(photo, "a red robot", small_config)
    after = {k: type(v) for k, v in unet.attn_processors.items()}
    assert before == after
    assert not unet.up_blocks[1].resnets[1].conv2._forward_hooks


def test_zero_thresholds_is_plain_ddim(editor: PnPEditor, small_config: EditConfig, photo) -> None:
    """No injection == diffusers' own StableDiffusionPipeline from the same start latent."""
    small_config.pnp.pnp_f_t = small_config.pnp.pnp_attn_t = 0.0
    result = editor.edit(photo, ["a red robot"], small_config)
    inversion = editor.invert(photo, small_config)
    sd: StableDiffusionPipeline = editor.pipeline.sd
    start = inversion.latents.at(editor.pipeline.sampling_timesteps(10)[0])
    plain = sd(
        "a red robot",
        negative_prompt=small_config.pnp.negative_prompt,
        latents=start,
        num_inference_steps=10,
        guidance_scale=small_config.pnp.guidance,
        output_type="latent",
        height=32,
        width=32,
    ).images
    assert result.latents is not None
    torch.testing.assert_close(result.latents, plain, rtol=0, atol=1e-6)


def test_blend_alpha_one_is_replace_and_zero_is_no_injection(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    replace = editor.edit(photo, "a red robot", small_config).latents
    assert replace is not None
    blend1 = editor.edit(photo, "a red robot", small_config, injection="blend", blend_alpha=1.0)
    torch.testing.assert_close(blend1.latents, replace, rtol=0, atol=0)
    blend0 = editor.edit(photo, "a red robot", small_config, injection="blend", blend_alpha=0.0)
    small_config.pnp.pnp_f_t = small_config.pnp.pnp_attn_t = 0.0
    none = editor.edit(photo, "a red robot", small_config).latents
    assert none is not None
    torch.testing.assert_close(blend0.latents, none, rtol=1e-5, atol=1e-5)
    assert (replace - none).abs().max() > 1e-3  # injection does change the result
