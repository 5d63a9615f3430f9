"""Architectures of the toy-world text-to-image model (random weights; training lives in ``train``).

Sizes follow the measured prototype: 64 px RGB -> ``AutoencoderKL`` (x4 down) -> 16x16x4 latent;
a ``UNet2DConditionModel`` in Stable Diffusion 1.5's block layout (so every PnP injection site
exists) with channels (32, 64, 64, 64), one layer per block and one attention head (more heads
or layers were 2-3x slower on CPU); a 3-layer, 64-wide ``CLIPTextModel`` over an offline
tokenizer in which every world word is one token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pnpsam.models.offline import build_offline_clip_tokenizer, token_ids_config
from pnpsam.toyworld.world import IMAGE_SIZE, WORLD_WORDS


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toy model's components."""

    image_size: int = IMAGE_SIZE  # pixels; the VAE downsamples x4 -> 16x16 latent
    latent_channels: int = 4  # as Stable Diffusion
    vae_channels: tuple[int, ...] = (32, 32, 64)  # 3 blocks = 2 downsamplings = x4
    unet_channels: tuple[int, int, int, int] = (32, 64, 64, 64)  # SD 1.5 has 4 levels too
    text_width: int = 64  # CLIP hidden size = UNet cross_attention_dim
    text_layers: int = 3
    text_heads: int = 2
    max_tokens: int = 16  # captions are 5 words; short padding keeps cross-attention cheap

    @property
    def vae_downsampling(self) -> int:
        """Image side / latent side: each VAE block after the first halves the resolution."""
        return int(2 ** (len(self.vae_channels) - 1))

    @classmethod
    def for_latent(cls, latent_size: int) -> ToyModelConfig:
        """Sizes for a ``latent_size`` x ``latent_size`` latent of the 64 px world: 16 (the
        shipped model, x4 VAE) or 32 (toy-v2, x2 VAE: the UNet's levels run at 32/16/8/4, so
        the paper's residual layer sits at 8x8 and self-attention reaches 32x32)."""
        vae = {16: (32, 32, 64), 32: (32, 64)}
        if latent_size not in vae:
            raise ValueError(f"latent size must be one of {sorted(vae)}; got {latent_size}")
        return cls(vae_channels=vae[latent_size])


def build_tokenizer(config: ToyModelConfig) -> CLIPTokenizer:
    """Offline CLIP tokenizer with merges for every world word (most become one token)."""
    return build_offline_clip_tokenizer(WORLD_WORDS, model_max_length=config.max_tokens)


def build_text_encoder(config: ToyModelConfig, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A small CLIP text encoder whose special-token ids match ``tokenizer``."""
    text_config = CLIPTextConfig(
        hidden_size=config.text_width,
        intermediate_size=config.text_width * 4,
        num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads,
        max_position_embeddings=config.max_tokens,
        projection_dim=config.text_width,
        **token_ids_config(tokenizer),
    )
    return CLIPTextModel(text_config)


def build_vae(config: ToyModelConfig) -> AutoencoderKL:
    """x4-downsampling ``AutoencoderKL``; ``scaling_factor`` 1 because the latent statistics are
    folded into ``quant_conv``/``post_quant_conv`` after training (see ``fold_latent_stats``)."""
    n = len(config.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=config.vae_channels,
        layers_per_block=1,
        latent_channels=config.latent_channels,
        norm_num_groups=min(32, config.vae_channels[0]),
        sample_size=config.image_size,
        scaling_factor=1.0,
    )


def build_unet(config: ToyModelConfig, vae_downsampling: int | None = None) -> UNet2DConditionModel:
    """UNet with SD 1.5's block types: CrossAttnDownBlock2D x3 + DownBlock2D, UpBlock2D +
    CrossAttnUpBlock2D x3; ``attention_head_dim=1`` means one head (diffusers' legacy naming)."""
    downsampling = vae_downsampling or config.vae_downsampling
    return UNet2DConditionModel(
        sample_size=config.image_size // downsampling,
        in_channels=config.latent_channels,
        out_channels=config.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels=config.unet_channels,
        layers_per_block=1,
        attention_head_dim=1,
        cross_attention_dim=config.text_width,
        norm_num_groups=min(32, config.unet_channels[0]),
    )


def build_scheduler() -> DDIMScheduler:
    """Stable Diffusion's DDIM scheduler (scaled-linear betas 0.00085..0.012, 1000 steps)."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


@torch.no_grad()
def fold_latent_stats(vae: AutoencoderKL, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make ``vae``'s latents zero-mean unit-std per channel, in place, so ``scaling_factor`` = 1.

    ``mean``/``std``: (latent_channels,) statistics of the posterior means over a dataset. The
    encoder's ``quant_conv`` (outputs [mean, logvar]) is rescaled to emit ``(z - mean) / std``
    with logvar shifted by ``-2 log std``; ``post_quant_conv`` undoes it on its input side.
    """
    if vae.quant_conv is None or vae.post_quant_conv is None:
        raise ValueError("fold_latent_stats needs a VAE with quant_conv and post_quant_conv")
    c = mean.numel()
    q = vae.quant_conv  # 1x1 conv, 2c -> 2c
    q.weight[:c] /= std[:, None, None, None]
    q.bias[:c] = (q.bias[:c] - mean) / std
    q.bias[c:] -= 2.0 * torch.log(std)
    p = vae.post_quant_conv  # 1x1 conv, c -> c; z_old = std * z_new + mean
    p.bias += (p.weight[:, :, 0, 0] @ mean).to(p.bias.dtype)
    p.weight *= std[None, :, None, None]
