"""Tiny Stable Diffusion pipelines of each supported layout, built from configs (random weights).

SD 1.5's block layout (``tiny_sd15_pipeline``), SD 2.x v-prediction (``tiny_sd2_pipeline``) and
SDXL's (``tiny_sdxl_pipeline``: two text encoders, pooled text and size conditioning, three up
blocks, two transformer layers deep). For tests, benchmarks' smoke mode and debugging without
downloads. They exercise every code path of a real checkpoint (same module names, same loader
when saved with ``save_pretrained``) but carry no knowledge: outputs are meaningless pictures.
The ``*_shaped_pipeline`` builders make the real architectures with random weights instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from pnpsam.models.offline import build_offline_clip_tokenizer, token_ids_config

SD15_DOWN_BLOCKS = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
SD15_UP_BLOCKS = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
SDXL_DOWN_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
SDXL_UP_BLOCKS = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
SD_SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}


def tiny_sd15_pipeline(
    seed: int = 0,
    conv_out_scale: float = 0.1,
    words: tuple[str, ...] = ("a", "photo", "of", "cat", "dog", "robot", "snow", "red", "blue"),
) -> StableDiffusionPipeline:
    """A ~1 M parameter SD 1.5-layout pipeline: UNet channels (32, 32, 64, 64), 2 layers per block.

    ``conv_out_scale`` shrinks the UNet's noise prediction so that DDIM inversion of a random
    UNet is well conditioned (invert-then-reconstruct is then a meaningful test). The VAE's
    scaling factor is set so that encoded latents have unit standard deviation, as SD's are.
    """
    torch.manual_seed(seed)
    tokenizer = build_offline_clip_tokenizer(words)
    text_encoder = _clip_text_encoder(tokenizer, hidden=32, intermediate=37, heads=4, layers=2)
    unet = _sd15_unet(32, (32, 32, 64, 64), cross_attention_dim=32, conv_out_scale=conv_out_scale)
    return _assemble(_tiny_vae(), text_encoder, tokenizer, unet)


def tiny_sd2_pipeline(
    seed: int = 0,
    conv_out_scale: float = 0.1,
    words: tuple[str, ...] = ("a", "photo", "of", "cat", "dog", "robot", "snow", "red", "blue"),
) -> StableDiffusionPipeline:
    """A ~1 M parameter SD 2.x-layout pipeline with v-prediction (SD 2.x 768-v's scheduler):
    SD 1.5's blocks with linear attention projections and per-block head widths, as SD 2.1.

    ``conv_out_scale`` shrinks the predicted v, so x0 ~ sqrt(alpha) x_t: DDIM inversion stays
    well conditioned, as for :func:`tiny_sd15_pipeline`."""
    torch.manual_seed(seed)
    tokenizer = build_offline_clip_tokenizer(words)
    text_encoder = _clip_text_encoder(tokenizer, hidden=32, intermediate=37, heads=4, layers=2)
    unet = _scaled_out(
        UNet2DConditionModel(
            sample_size=32,
            block_out_channels=(32, 32, 64, 64),
            layers_per_block=2,
            down_block_types=SD15_DOWN_BLOCKS,
            up_block_types=SD15_UP_BLOCKS,
            cross_attention_dim=32,
            attention_head_dim=(2, 4, 8, 8),
            use_linear_projection=True,
            upcast_attention=True,
        ),
        conv_out_scale,
    )
    scheduler = DDIMScheduler(**SD_SCHEDULER, prediction_type="v_prediction")
    return _assemble(_tiny_vae(), text_encoder, tokenizer, unet, scheduler)


def tiny_sdxl_pipeline(
    seed: int = 0,
    conv_out_scale: float = 0.1,
    words: tuple[str, ...] = ("a", "photo", "of", "cat", "dog", "robot", "snow", "red", "blue"),
) -> StableDiffusionXLPipeline:
    """A ~2 M parameter SDXL-layout pipeline: SDXL's blocks (no attention at the finest level,
    transformer stacks 2 deep at the coarse ones), a CLIP text encoder and a second one with a
    projection (pooled text), size/crop time ids; hidden states of both concatenated (64)."""
    torch.manual_seed(seed)
    tokenizer = build_offline_clip_tokenizer(words)
    tokenizer_2 = build_offline_clip_tokenizer(words)
    text_encoder = _clip_text_encoder(tokenizer, hidden=32, intermediate=37, heads=4, layers=2)
    text_encoder_2 = _clip_text_encoder(
        tokenizer_2, hidden=32, intermediate=37, heads=4, layers=2, projection_dim=32
    )
    unet = _scaled_out(
        UNet2DConditionModel(**_sdxl_unet_config(32, (32, 64, 64), (1, 2, 2), 32 + 32, 8, 32)),
        conv_out_scale,
    )
    return _assemble_xl(_tiny_vae(), text_encoder, text_encoder_2, tokenizer, tokenizer_2, unet)


def _sdxl_unet_config(
    sample_size: int,
    channels: tuple[int, int, int],
    depth: tuple[int, int, int],
    text_width: int,
    time_embed_dim: int,
    pooled_width: int,
    head_dims: tuple[int, int, int] | int = 8,
) -> dict[str, Any]:
    """SDXL's UNet config (diffusers' unet/config.json of SDXL base) at other widths:
    ``text_width`` is both encoders' hidden sizes together (their states are concatenated),
    the added embedding reads the pooled text and 6 time ids of ``time_embed_dim`` each."""
    return {
        "sample_size": sample_size,
        "block_out_channels": channels,
        "layers_per_block": 2,
        "down_block_types": SDXL_DOWN_BLOCKS,
        "up_block_types": SDXL_UP_BLOCKS,
        "transformer_layers_per_block": depth,
        "cross_attention_dim": text_width,
        "attention_head_dim": head_dims,
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": time_embed_dim,
        "projection_class_embeddings_input_dim": 6 * time_embed_dim + pooled_width,
    }


def _tiny_vae() -> AutoencoderKL:
    """A 2-level VAE (factor 2) whose scaling factor gives encoded latents unit std."""
    vae = AutoencoderKL(
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        sample_size=64,
    )
    with torch.no_grad():
        probe = torch.linspace(-1, 1, 64 * 64 * 3).reshape(1, 3, 64, 64)
        probe = torch.sin(probe * 17.0) * 0.8
        std = vae.encode(probe).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    return vae


Arch = Literal["sd15", "sd2", "sdxl"]
ARCHES: tuple[Arch, ...] = get_args(Arch)


# Values of the public configs of SD 1.5, SD 2.1 (768-v) and SDXL base 1.0.
@dataclass(frozen=True)
class TextEncoderShape:
    """A CLIP text encoder's size, as ``_clip_text_encoder`` takes it."""

    hidden: int
    intermediate: int
    heads: int
    layers: int
    act: str = "quick_gelu"


CLIP_L = TextEncoderShape(768, 3072, 12, 12)
OPENCLIP_H = TextEncoderShape(1024, 4096, 16, 23, "gelu")
OPENCLIP_BIGG = TextEncoderShape(1280, 5120, 20, 32, "gelu")
SD_UNET = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": SD15_DOWN_BLOCKS,
    "up_block_types": SD15_UP_BLOCKS,
}
SHAPED_UNETS: dict[Arch, dict[str, Any]] = {
    "sd15": {**SD_UNET, "sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8},
    "sd2": {
        **SD_UNET,
        "sample_size": 96,
        "cross_attention_dim": 1024,
        "attention_head_dim": (5, 10, 20, 20),
        "use_linear_projection": True,
        "upcast_attention": True,
    },
    "sdxl": _sdxl_unet_config(
        128, (320, 640, 1280), (1, 2, 10), 768 + 1280, 256, 1280, (5, 10, 20)
    ),
}
SHAPED_VAE_SCALING: dict[Arch, float] = {"sd15": 0.18215, "sd2": 0.18215, "sdxl": 0.13025}
# a prime length: no weight row of any width repeats a row of the tiled block exactly
_FILL_PERIOD = 1_000_003


def shaped_unet(
    arch: Arch,
    seed: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> UNet2DConditionModel:
    """The real UNet of ``arch`` (SD 1.5 860 M, SD 2.1 865 M, SDXL 2.6 B parameters) with
    cheap random weights (``materialize``), its prediction shrunk x 0.1."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        unet = UNet2DConditionModel(**SHAPED_UNETS[arch])
    if dtype != torch.float32:  # on the meta device: no memory moves
        unet = unet.to(dtype)
    return _scaled_out(materialize(unet, seed, device), 0.1).eval()


def materialize(
    module: torch.nn.Module, seed: int, device: torch.device | str = "cpu"
) -> torch.nn.Module:
    """Give every parameter of ``module`` still on the meta device (``init_empty_weights``)
    values on ``device`` at a cost of a memory copy, not of drawing billions of random
    numbers: matrices and kernels (B, fan_in...) uniform in +-1/sqrt(fan_in) (torch's own
    default bound for Linear/Conv) tiled from one seeded block of ``_FILL_PERIOD`` values,
    at a per-tensor offset; vectors named ``weight`` (norm scales) 1, others (biases) 0.
    Buffers (e.g. CLIP's position ids) are real already and kept."""
    generator = torch.Generator("cpu").manual_seed(seed)
    block = torch.rand(_FILL_PERIOD, generator=generator) * 2 - 1
    for index, child in enumerate(module.modules()):
        for name, param in list(child._parameters.items()):
            if param is None or not param.is_meta:
                continue
            values = torch.empty(param.shape, dtype=param.dtype, device=device)
            if param.dim() >= 2:  # one pass of copies from the block, then one scaling
                flat, done = values.view(-1), 0
                offset = (index * 7919 + len(name)) % _FILL_PERIOD
                while done < flat.numel():
                    part = block[offset : offset + flat.numel() - done]
                    flat[done : done + part.numel()].copy_(part)
                    done, offset = done + part.numel(), 0
                values.mul_(1.0 / param[0].numel() ** 0.5)
            else:
                values.fill_(1.0 if name == "weight" else 0.0)
            child._parameters[name] = torch.nn.Parameter(values, requires_grad=False)
    return module


def shaped_pipeline(
    arch: Arch,
    seed: int,
    words: tuple[str, ...],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """The real architecture of ``arch`` with random weights (``materialize``): text
    encoder(s), UNet, VAE and the checkpoint's scheduler (SD 2.1: v-prediction), for memory
    and speed measurements without the checkpoint. Nothing is drawn by torch's initialisers,
    so building SDXL (3.5 B parameters) costs a few memory copies (about 14 GB in fp32)."""
    from accelerate import init_empty_weights

    tokenizer = build_offline_clip_tokenizer(words)
    with init_empty_weights():
        if arch == "sd2":
            text_encoder = _clip_text_encoder(tokenizer, **asdict(OPENCLIP_H))
        else:
            text_encoder = _clip_text_encoder(tokenizer, **asdict(CLIP_L))
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=SHAPED_UNETS[arch]["sample_size"] * 8,
            scaling_factor=SHAPED_VAE_SCALING[arch],
        )
        text_encoder_2 = None
        if arch == "sdxl":
            big_g = asdict(OPENCLIP_BIGG)
            text_encoder_2 = _clip_text_encoder(tokenizer, projection_dim=1280, **big_g)
    parts = [text_encoder, vae] + ([text_encoder_2] if text_encoder_2 is not None else [])
    for number, part in enumerate(parts):
        materialize(part.to(dtype) if dtype != torch.float32 else part, seed + 1 + number, device)
    unet = shaped_unet(arch, seed, device, dtype)
    if arch == "sdxl":
        assert text_encoder_2 is not None
        return _assemble_xl(vae, text_encoder, text_encoder_2, tokenizer, tokenizer, unet)
    prediction = "v_prediction" if arch == "sd2" else "epsilon"
    scheduler = DDIMScheduler(**SD_SCHEDULER, prediction_type=prediction)
    return _assemble(vae, text_encoder, tokenizer, unet, scheduler)


def sd15_shaped_pipeline(
    seed: int, words: tuple[str, ...], device: torch.device | str = "cpu"
) -> StableDiffusionPipeline:
    """SD 1.5's real architecture and shapes (CLIP ViT-L text encoder, 860 M UNet, 512 px VAE)
    with random weights (``shaped_pipeline``)."""
    sd = shaped_pipeline("sd15", seed, words, device)
    assert isinstance(sd, StableDiffusionPipeline)
    return sd


def _clip_text_encoder(
    tokenizer: CLIPTokenizer,
    hidden: int,
    intermediate: int,
    heads: int,
    layers: int,
    projection_dim: int | None = None,
    act: str = "quick_gelu",
) -> CLIPTextModel | CLIPTextModelWithProjection:
    """A CLIP text encoder; with ``projection_dim`` the one with a text projection (pooled
    embeds: SDXL's second encoder)."""
    config = CLIPTextConfig(
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=heads,
        num_hidden_layers=layers,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act=act,
        projection_dim=projection_dim or 512,
        **token_ids_config(tokenizer),
    )
    if projection_dim is None:
        return CLIPTextModel(config)
    return CLIPTextModelWithProjection(config)


def _sd15_unet(
    sample_size: int,
    channels: tuple[int, int, int, int],
    cross_attention_dim: int,
    conv_out_scale: float,
) -> UNet2DConditionModel:
    """A UNet in SD 1.5's block layout, its noise prediction scaled by ``conv_out_scale``."""
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        block_out_channels=channels,
        layers_per_block=2,
        down_block_types=SD15_DOWN_BLOCKS,
        up_block_types=SD15_UP_BLOCKS,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
    )
    return _scaled_out(unet, conv_out_scale)


def _scaled_out(unet: UNet2DConditionModel, conv_out_scale: float) -> UNet2DConditionModel:
    """``unet`` with its prediction shrunk by ``conv_out_scale`` (its last conv scaled)."""
    with torch.no_grad():
        unet.conv_out.weight.mul_(conv_out_scale)
        unet.conv_out.bias.mul_(conv_out_scale)
    return unet


def _assemble(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    unet: UNet2DConditionModel,
    scheduler: DDIMScheduler | None = None,
) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler or DDIMScheduler(**SD_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _assemble_xl(
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer,
    tokenizer_2: CLIPTokenizer,
    unet: UNet2DConditionModel,
) -> StableDiffusionXLPipeline:
    # SDXL's schedule is SD's scaled-linear one; no invisible watermark (PnP decodes itself)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=DDIMScheduler(**SD_SCHEDULER),
        add_watermarker=False,
    )
