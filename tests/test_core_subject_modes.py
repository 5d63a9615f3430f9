"""The subject-aware design options of issue 11, on the tiny SD-layout model: where the subject
mask applies (coarse layers, first steps, which features), the composed self-attention, and
re-noising the background after the first steps."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig
from pnpsam.core.callbacks import InjectionRecorder
from pnpsam.core.injection import InjectionEvent, token_grid

_LATENT = (16, 32)  # a 32x64 image's latent


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), np.uint8))


def _left_half() -> torch.Tensor:
    mask = torch.zeros(1, 1, 32, 64)
    mask[..., :32] = 1.0
    return mask


def _edit(editor: PnPEditor, cfg: EditConfig, mask: torch.Tensor | None = None):
    recorder = InjectionRecorder()
    inversion = editor.invert(_image(), cfg)
    latents = editor.pipeline.edit(inversion.latents, ["a red robot"], cfg.pnp, mask, recorder)
    return latents, recorder.events


def _background_is_source(event: InjectionEvent) -> bool:
    rows = event.features
    if event.kind == "residual":
        background = rows[..., rows.shape[-1] // 2 :]
    else:
        h, w = token_grid(rows.shape[1], _LATENT)
        background = rows.reshape(rows.shape[0], h, w, -1)[:, :, w // 2 :]
    return torch.equal(background[1:], background[:1].expand_as(background[1:]))


def _grid_side(event: InjectionEvent) -> int:
    rows = event.features
    return rows.shape[-2] if event.kind == "residual" else token_grid(rows.shape[1], _LATENT)[0]


def test_coarse_layers_and_first_steps_inject_everywhere(editor, small_config) -> None:
    pnp = small_config.pnp
    pnp.residual_blocks, pnp.attention_blocks = (4, 7), (4, 7, 10)  # 4x8, 8x16, 16x32 grids
    pnp.full_injection_scale, pnp.full_injection_t = 0.25, 0.2  # 4x8 grids; steps 0-1
    _, events = _edit(editor, small_config, _left_half())
    sides = {_grid_side(e) for e in events}
    assert sides == {4, 8, 16}
    for event in events:
        everywhere = event.step.index < 2 or _grid_side(event) <= 4
        assert _background_is_source(event) == everywhere, (event.kind, event.block)


def test_masked_features_limits_only_the_named_family(editor, small_config) -> None:
    small_config.pnp.masked_features = "residual"
    _, events = _edit(editor, small_config, _left_half())
    for event in events:
        assert _background_is_source(event) == (event.kind != "residual"), event.kind


def test_source_background_attention(editor, small_config) -> None:
    """With the whole image as subject it is plain PnP (every logit is the source's); with half
    of it, background queries keep the source's logits to subject keys, so the edit differs
    from plain masked injection."""
    plain, _ = _edit(editor, small_config)
    small_config.pnp.background_attention = "source"
    composed, _ = _edit(editor, small_config, torch.ones(1, 1, 32, 64))
    assert torch.allclose(composed, plain, atol=1e-4)
    half_source, _ = _edit(editor, small_config, _left_half())
    small_config.pnp.background_attention = "own"
    half_own, _ = _edit(editor, small_config, _left_half())
    assert not torch.allclose(half_source, half_own, atol=1e-3)


def test_background_renoised_after_the_first_steps(editor, small_config) -> None:
    pnp = small_config.pnp
    pnp.background_noise, pnp.background_noise_t = 1.0, 0.3
    inversion = editor.invert(_image(), small_config)
    start = editor.pipeline.start_latent(inversion.latents, pnp, _left_half())
    x_T = inversion.latents.at(editor.pipeline.sampling_timesteps(10)[0])
    assert torch.equal(start, x_T)  # not at x_T: later
    renoised = editor.pipeline.edit(inversion.latents, ["a red robot"], pnp, _left_half())
    pnp.background_noise = 0.0
    kept = editor.pipeline.edit(inversion.latents, ["a red robot"], pnp, _left_half())
    # Only the background changes much: it is redrawn from noise from step 3 on.
    diff = (renoised - kept).abs().mean(dim=(0, 1, 2))  # per latent column
    assert diff[16:].mean() > 3 * diff[:16].mean(), diff


def test_scheme3_fills_keep_the_subject_and_drop_background_structure() -> None:
    from pnpsam.masks.weaken import weaken_background

    rng = np.random.default_rng(1)
    image = rng.uniform(0.2, 0.8, (32, 32, 3)).astype(np.float32)  # cluttered background
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1.0
    subject, background = mask.astype(bool), ~mask.astype(bool)
    for mode in ("mean", "blur"):
        out = weaken_background(image, mask, mode)
        assert np.array_equal(out[subject], image[subject]), mode
        assert out[background].std(axis=0).max() < 0.5 * image[background].std(axis=0).min()
        mean_colour = image[background].mean(axis=0)
        assert np.allclose(out[background].mean(axis=0), mean_colour, atol=0.03), mode
    assert np.allclose(weaken_background(image, mask, "mean")[0, 0], image[background].mean(0))


def test_centered_background_keeps_source_structure_not_its_mean(editor, small_config) -> None:
    small_config.pnp.background_injection = "centered"
    _, events = _edit(editor, small_config, _left_half())
    residuals = [e.features for e in events if e.kind == "residual"]
    assert residuals
    for rows in residuals:
        half = rows.shape[-1] // 2
        subject, background = rows[..., :half], rows[..., half:]
        assert torch.equal(subject[1:], subject[:1].expand_as(subject[1:]))
        centred = background - background.mean(dim=(2, 3), keepdim=True)
        assert torch.allclose(centred[1:], centred[:1].expand_as(centred[1:]), atol=1e-5)
        means = background.mean(dim=(2, 3))
        assert not torch.allclose(means[1], means[0], atol=1e-4)  # the mean is the row's own


def test_mask_cells_cover_keeps_every_touched_cell_and_background_weight_is_a_floor() -> None:
    """A 3-pixel-wide subject column on a 16x16 mask, reduced to 4x4 cells: "area" weights its
    cell column by the share covered (3/4), "cover" counts the column fully; other cells get
    ``background_weight``; upsampling stays bilinear for both."""
    from pnpsam.core.injection import InjectionSettings

    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5:8] = 1.0  # inside cell column 1 (pixels 4-7)
    like = torch.zeros(1)
    area = InjectionSettings(mask=mask).mask_at(4, 4, like)
    cover = InjectionSettings(mask=mask, mask_cells="cover").mask_at(4, 4, like)
    assert torch.allclose(area[0, 0, :, 1], torch.full((4,), 0.75))
    assert torch.equal(cover[0, 0, :, 1], torch.ones(4))
    for grid in (area, cover):
        assert torch.equal(grid[0, 0][:, [0, 2, 3]], torch.zeros(4, 3))
    floor = InjectionSettings(mask=mask, mask_cells="cover", background_weight=0.3)
    weights = floor.mask_at(4, 4, like)[0, 0]
    assert torch.allclose(weights[:, [0, 2, 3]], torch.full((4, 3), 0.3))
    assert torch.equal(weights[:, 1], torch.ones(4))
    up_area = InjectionSettings(mask=mask).mask_at(32, 32, like)
    up_cover = InjectionSettings(mask=mask, mask_cells="cover").mask_at(32, 32, like)
    assert torch.equal(up_area, up_cover)


def test_background_weight_one_is_plain_pnp(editor, small_config) -> None:
    plain, _ = _edit(editor, small_config)
    small_config.pnp.background_weight = 1.0
    floored, _ = _edit(editor, small_config, _left_half())
    assert torch.allclose(floored, plain, atol=1e-5)


def test_subject_default_resolves_auto_fields_and_records_them(editor, small_config) -> None:
    """weaken "auto" with a subject is the subject-aware default: mask_cells "auto" becomes
    cover and background_weight 0.2 in the edit's config (so its record states them); with the
    background kept explicitly, or values set by hand, they stay as given / the plain ones."""
    from pnpsam.config import (
        SUBJECT_BACKGROUND_WEIGHT,
        SUBJECT_MASK_CELLS,
        PnPConfig,
        SubjectPolicy,
        WeakenConfig,
    )

    plain = SubjectPolicy.decide("auto", has_subject=False)
    assert plain.pnp(PnPConfig()).mask_cells == "area"
    assert plain.pnp(PnPConfig()).background_weight == 0.0
    assert plain.weaken(WeakenConfig()).background == "keep"
    assert not SubjectPolicy.decide("keep", has_subject=True).subject_aware
    aware = SubjectPolicy.decide("auto", has_subject=True)
    assert aware.weaken(WeakenConfig()).background == "remove"
    chosen = aware.pnp(PnPConfig(mask_cells="area", background_weight=0.5))
    assert (chosen.mask_cells, chosen.background_weight) == ("area", 0.5)
    mask = _left_half()[0, 0].numpy()
    default = editor.edit(_image(), ["a red robot"], small_config, mask=mask)
    assert default.config.weaken.background == "remove"
    resolved = default.config.pnp
    assert (resolved.mask_cells, resolved.background_weight) == (
        SUBJECT_MASK_CELLS,
        SUBJECT_BACKGROUND_WEIGHT,
    )
    assert default.record()["config"]["pnp"]["mask_cells"] == SUBJECT_MASK_CELLS
    small_config.weaken.background = "keep"
    kept = editor.edit(_image(), ["a red robot"], small_config, mask=mask)
    assert (kept.config.pnp.mask_cells, kept.config.pnp.background_weight) == ("area", 0.0)


def test_subject_words_are_found_as_the_text_encoder_reads_them(editor) -> None:
    import warnings

    from pnpsam.core.subject_text import SubjectWordsWarning

    prompts = ["a red robot in the snow", "a cat", "robot robot"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        weights = editor.pipeline.subject_tokens(prompts, "red robot")
    ids = editor.pipeline.sd.tokenizer(prompts[0]).input_ids  # [start, a, red, robot, ...]
    assert weights.shape == (3, editor.pipeline.sd.tokenizer.model_max_length)
    assert weights[0].nonzero().flatten().tolist() == [2, 3], ids
    assert not weights[1].any()  # "a cat" names no subject word: warned, nothing hidden
    assert weights[2].nonzero().flatten().tolist() == [1, 2]
    assert [w.category for w in caught] == [SubjectWordsWarning]
    assert "'a cat'" in str(caught[0].message)


def test_background_queries_do_not_attend_to_subject_tokens(editor) -> None:
    """One cross-attention layer of the tiny UNet through the subject-text processor: for the
    cond row, background queries give the subject tokens ~0 attention (<= 1e-3 of the plain
    weight) while subject queries and every other row keep the plain attention."""
    from pnpsam.core.subject_text import SubjectTextAttention

    unet = editor.pipeline.unet
    name = next(n for n in unet.attn_processors if n.endswith("attn2.processor"))
    attn = unet.get_submodule(name.removesuffix(".processor"))
    tokens = torch.zeros(1, 77)
    tokens[0, 3] = 1.0
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(2, 8 * 16, attn.to_q.in_features, generator=generator)  # uncond, cond
    text = torch.randn(2, 77, attn.to_k.in_features, generator=generator)
    text_attention = SubjectTextAttention(unet, _left_half(), _LATENT)

    def attention_probs() -> torch.Tensor:
        query = attn.head_to_batch_dim(attn.to_q(states))
        key = attn.head_to_batch_dim(attn.to_k(text))
        bias = text_attention.bias(2, states.shape[1], query)
        logits = query @ key.transpose(-1, -2) * attn.scale
        if bias is not None:
            logits = logits + bias.repeat_interleave(attn.heads, dim=0)[:, 0]
        return logits.softmax(-1).view(2, attn.heads, states.shape[1], 77)

    plain = attention_probs()
    text_attention.tokens = tokens
    hidden = attention_probs()
    grid = torch.arange(8 * 16) % 16 < 8  # left half of the 8x16 token grid = the subject
    cond = 1
    assert torch.equal(hidden[0], plain[0])  # the uncond row is untouched
    assert torch.allclose(hidden[cond][:, grid], plain[cond][:, grid], atol=1e-6)
    assert (hidden[cond][:, ~grid, 3] <= 1e-3 * plain[cond][:, ~grid, 3] + 1e-9).all()
    with text_attention:
        out = attn(states, encoder_hidden_states=text)
    manual = hidden.reshape(2 * attn.heads, -1, 77) @ attn.head_to_batch_dim(attn.to_v(text))
    expected = attn.to_out[0](attn.batch_to_head_dim(manual))
    assert torch.allclose(out, expected, atol=1e-5)
    assert unet.attn_processors[name].__class__.__name__ != "_SubjectTextProcessor"  # restored
