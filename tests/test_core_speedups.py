"""GPU speed work checked on the CPU: no per-step host-to-device copies, caches that follow their
inputs, SDPA in every attention processor, and channels-last / compiled blocks that compute the
same edit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig
from pnpsam.core.injection import InjectionSettings, find_injection_sites
from pnpsam.core.inversion import InvertedLatents
from pnpsam.core.pipeline import PnPPipeline
from pnpsam.core.subject_text import SubjectTextAttention
from pnpsam.models.speedups import speed_up, unet_blocks
from pnpsam.models.tiny import tiny_sd15_pipeline


@contextmanager
def unet_timesteps(unet: torch.nn.Module) -> Iterator[list[Any]]:
    """The timestep argument of every UNet call inside the block (with its sample's device)."""
    seen: list[Any] = []

    def record(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        seen.append((timestep, sample.device))

    handle = unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def test_unet_gets_timesteps_already_on_the_device(
    editor: PnPEditor, photo: Image.Image, small_config: EditConfig
) -> None:
    """A Python-int timestep makes diffusers copy it to the device at every call (a blocking
    copy that waits for the GPU); inversion and sampling pass device tensors instead, with the
    same values as the scheduler's grid."""
    editor.store.clear()
    with unet_timesteps(editor.pipeline.unet) as seen:
        result = editor.edit(photo, ["a red robot"], small_config)
    steps = small_config.pnp.steps
    assert result.unet_evaluations > 0  # inverted here, not reused
    assert len(seen) == steps + editor.pipeline.inversion_calls(steps, steps)
    for timestep, device in seen:
        assert isinstance(timestep, torch.Tensor) and timestep.ndim == 0
        assert timestep.device == device and timestep.dtype == torch.int64
    values = [int(t) for t, _ in seen]
    sampling = editor.pipeline.sampling_timesteps(small_config.pnp.steps)
    assert values[-len(sampling) :] == sampling  # the guided steps, 901 ... 1
    assert values[: len(sampling)] == sampling[::-1]  # the inversion climbs the same grid


def test_subject_token_cache_follows_the_tokens(editor: PnPEditor) -> None:
    """Device copies of the subject tokens are made once per prompt chunk, and a new chunk's
    tokens replace them (no stale bias from the previous chunk)."""
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1.0
    text = SubjectTextAttention(editor.pipeline.unet, mask, (16, 16))
    like = torch.zeros(1, dtype=torch.float64)
    assert text.bias(2, 256, like) is None  # no tokens yet
    first = torch.zeros(1, 77)
    first[0, 2] = 1.0
    text.tokens = first
    bias = text.bias(2, 256, like)
    assert bias is not None and bias.dtype == torch.float64
    again = text.bias(2, 256, like)
    assert again is not None and torch.equal(again, bias)
    assert bias[0].abs().max() == 0  # the uncond row: nothing
    assert bias[1, 0, 0, 2] == 0 and bias[1, 0, 15, 2] < -9  # subject cell 0, background 15
    second = torch.zeros(1, 77)
    second[0, 5] = 1.0
    text.tokens = second
    moved = text.bias(2, 256, like)
    assert moved is not None
    assert moved[1, 0, 15, 2] == 0 and moved[1, 0, 15, 5] < -9
    text.tokens = torch.zeros(1, 77)  # a prompt without the subject words
    assert text.bias(2, 256, like) is None


def test_grid_mask_is_converted_once_per_dtype() -> None:
    mask = torch.rand(1, 1, 32, 32)
    settings = InjectionSettings(mask=mask, background_weight=0.25)
    half = settings.mask_at(8, 8, torch.zeros(1, dtype=torch.bfloat16))
    full = settings.mask_at(8, 8, torch.zeros(1, dtype=torch.float32))
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    assert settings.mask_at(8, 8, torch.zeros(1, dtype=torch.bfloat16)) is half
    expected = torch.nn.functional.interpolate(mask, size=(8, 8), mode="area")
    assert torch.allclose(full, expected + (1 - expected) * 0.25)
    assert torch.equal(half, full.to(torch.bfloat16))


def test_every_attention_in_an_edit_is_sdpa(
    editor: PnPEditor, photo: Image.Image, small_config: EditConfig
) -> None:
    """The processors in place while the UNet runs (diffusers' own, PnP's injecting one, the
    subject-words one) all call torch's scaled_dot_product_attention."""
    unet = editor.pipeline.unet
    seen: set[str] = set()

    def record(*_: object) -> None:
        seen.update(type(p).__name__ for p in unet.attn_processors.values())

    sdpa_calls = 0
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal sdpa_calls
        sdpa_calls += 1
        return real_sdpa(*args, **kwargs)

    cfg = EditConfig.from_dict(small_config.to_dict())
    cfg.pnp.subject_words = "robot"
    mask = torch.zeros(32, 32).numpy()
    mask[8:24, 8:24] = 1.0
    handle = unet.register_forward_pre_hook(record)
    try:
        torch.nn.functional.scaled_dot_product_attention = counting_sdpa
        editor.store.clear()
        editor.edit(photo.resize((32, 32)), ["a red robot"], cfg, mask=mask)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real_sdpa
        handle.remove()
    assert seen == {"AttnProcessor2_0", "PnPSelfAttentionProcessor", "_SubjectTextProcessor"}
    attention_layers = len(unet.attn_processors)  # self and cross, 16 each
    calls = small_config.pnp.steps + small_config.inversion.steps
    assert sdpa_calls >= attention_layers * calls


@pytest.fixture(scope="module")
def twins() -> tuple[PnPPipeline, PnPPipeline]:
    """Two pipelines on separate copies of the same tiny weights (one is sped up in place)."""
    pipes = []
    for _ in range(2):
        sd = tiny_sd15_pipeline(seed=0)
        sd.set_progress_bar_config(disable=True)
        pipes.append(PnPPipeline(sd, torch.device("cpu")))
    return pipes[0], pipes[1]


def _edit(pipe: PnPPipeline, inverted: InvertedLatents, cfg: EditConfig) -> torch.Tensor:
    """Decoded images (2, 3, H, W) of a two-prompt edit."""
    with torch.no_grad():
        return pipe.decode(pipe.edit(inverted, ["a red robot", "a cat"], cfg.pnp))


def test_channels_last_and_compiled_blocks_edit_the_same(
    twins: tuple[PnPPipeline, PnPPipeline], editor: PnPEditor, photo: Image.Image
) -> None:
    """channels-last memory and torch.compile (dynamo tracing, eager backend: no code
    generation in a test) leave the edit as it was; the blocks holding injection sites stay
    uncompiled, so injection still reaches them."""
    plain, fast = twins
    cfg = editor.default_config()
    cfg.preprocess.size = 32
    cfg.inversion.steps = cfg.pnp.steps = 6
    inverted = editor.invert(photo, cfg).latents
    expected = _edit(plain, inverted, cfg)
    unet = fast.unet
    sites = find_injection_sites(unet, cfg.pnp.residual_blocks, cfg.pnp.attention_blocks)
    eager = [*sites.residual.values(), *sites.attention.values()]
    compiled = speed_up(fast.sd, True, "default", eager, backend="eager")
    holding = {name for name in unet_blocks(unet) if any(s.startswith(name + ".") for s in eager)}
    assert holding == {"up_blocks.1", "up_blocks.2", "up_blocks.3"}
    assert compiled == [name for name in unet_blocks(unet) if name not in holding]
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    torch._dynamo.reset()
    try:
        got = _edit(fast, inverted, cfg)
    finally:
        torch._dynamo.reset()
    assert expected.std() > 0.05  # not a flat picture
    assert (got - expected).abs().max() < 1e-4


def test_speed_up_refuses_unknown_compile_mode(twins: tuple[PnPPipeline, PnPPipeline]) -> None:
    with pytest.raises(ValueError, match="compile mode 'fastest'"):
        speed_up(twins[0].sd, compile_mode="fastest")
