"""PnP on tensors: encode, invert once, sample any number of prompts, decode. No file I/O.

``PnPPipeline`` wraps the components of a loaded ``StableDiffusionPipeline``; the front ends
(``pnpsam.api``, the CLI) turn files and PIL images into the tensors used here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline

from pnpsam.config import InversionConfig, PnPConfig
from pnpsam.core.features import SourceFeatures, needed_features
from pnpsam.core.injection import (
    CellReduction,
    FeatureInjector,
    InjectionEvent,
    InjectionSettings,
    find_injection_sites,
)
from pnpsam.core.inversion import InvertedLatents, StepCallback, ddim_invert, inversion_timesteps
from pnpsam.core.sampling import (
    LatentsStep,
    SamplingCallback,
    TextConditions,
    injection_schedule,
    keep_background,
    pnp_sample,
)
from pnpsam.core.subject_text import SubjectTextAttention, subject_token_weights
from pnpsam.models.loading import inverse_scheduler_for


class OutOfMemoryError(RuntimeError):
    """The accelerator ran out of memory even at one prompt per batch."""


@dataclass
class RowCounter:
    """UNet row-evaluations (batch rows summed over calls) seen while it was installed."""

    rows: int = 0
    calls: int = 0


class PnPPipeline:
    """Plug-and-Play translation on top of Stable Diffusion components.

    Images are (1, 3, H, W) tensors in [-1, 1] with H, W multiples of ``size_multiple``;
    latents are (·, C, H / vae_scale_factor, W / vae_scale_factor).
    """

    def __init__(self, sd: StableDiffusionPipeline, device: torch.device) -> None:
        self.sd = sd
        self.device = device
        self.unet = sd.unet
        self.vae = sd.vae
        self.scheduler = sd.scheduler
        self.inverse_scheduler = inverse_scheduler_for(sd.scheduler)
        self.dtype = sd.unet.dtype

    # -- geometry ------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return int(self.sd.vae_scale_factor)

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE factor times the UNet's downsampling."""
        downsamples = len(self.unet.config.down_block_types) - 1
        return self.vae_scale_factor * 2**downsamples

    @property
    def native_size(self) -> int:
        """The image side the checkpoint was trained at (512 for SD 1.5, 768 for SD 2.1)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(1, C, h, w): the shape of the latent of one (H, W) image."""
        factor = self.vae_scale_factor
        return (1, int(self.vae.config.latent_channels), height // factor, width // factor)

    @contextmanager
    def count_unet_rows(self) -> Iterator[RowCounter]:
        """Count the UNet's row-evaluations inside the block (a removable forward pre-hook)."""
        counter = RowCounter()

        def count(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            sample = args[0] if args else kwargs["sample"]
            counter.rows += int(sample.shape[0])
            counter.calls += 1

        handle = self.unet.register_forward_pre_hook(count, with_kwargs=True)
        try:
            yield counter
        finally:
            handle.remove()

    # -- encoders ------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), L, D) CLIP embeddings, as diffusers' ``encode_prompt`` makes them."""
        embeddings, _ = self.sd.encode_prompt(
            list(prompts), self.device, 1, do_classifier_free_guidance=False
        )
        return embeddings

    def subject_tokens(self, prompts: Sequence[str], words: str) -> torch.Tensor:
        """(len(prompts), L) weights marking the tokens of ``words`` (whitespace-separated) in
        each prompt as the text encoder reads it (see ``subject_token_weights``)."""
        tokenizer = self.sd.tokenizer
        ids = tokenizer(
            list(prompts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        word_ids = [tokenizer(w, add_special_tokens=False).input_ids for w in words.split()]
        return subject_token_weights(ids, word_ids, prompts)

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> (1, C, h, w): VAE posterior mean x scaling factor."""
        image = image.to(device=self.device, dtype=self.vae.dtype)
        latent = self.vae.encode(image).latent_dist.mean
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        return ((latent - shift) * self.vae.config.scaling_factor).to(self.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(k, C, h, w) latents -> (k, 3, H, W) images in [0, 1], float32 on the CPU."""
        shift = getattr(self.vae.config, "shift_factor", None) or 0.0
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor + shift
        images = torch.cat([self.vae.decode(x[None]).sample for x in latents])
        return (images.float() / 2 + 0.5).clamp(0, 1).cpu()

    # -- PnP -----------------------------------------------------------------------------
    def sampling_timesteps(self, steps: int) -> list[int]:
        self.scheduler.set_timesteps(steps)
        return [int(t) for t in self.scheduler.timesteps]

    def inversion_calls(self, inversion_steps: int, sampling_steps: int) -> int:
        """UNet calls an inversion makes: it stops at the highest sampling timestep."""
        grid = inversion_timesteps(self.inverse_scheduler, inversion_steps)
        last = max(self.sampling_timesteps(sampling_steps))
        # a grid without it is refused by ddim_invert, naming the missing timesteps
        return grid.index(last) + 1 if last in grid else len(grid)

    def invert(
        self,
        image: torch.Tensor,
        cfg: InversionConfig,
        sampling_steps: int,
        callback: StepCallback | None = None,
    ) -> InvertedLatents:
        """DDIM-invert (1, 3, H, W) ``image``; keeps x_t on the ``sampling_steps`` grid."""
        clean = self.encode_image(image)
        embedding = self.encode_text([cfg.prompt])
        keep = self.sampling_timesteps(sampling_steps)
        steps = cfg.steps_for(sampling_steps)
        total = self.inversion_calls(steps, sampling_steps)
        with self.sd.progress_bar(total=total) as bar:
            bar.set_description("invert")
            return ddim_invert(
                self.unet,
                self.inverse_scheduler,
                clean,
                embedding,
                steps,
                keep,
                callback=callback,
                progress=bar.update,
            )

    def start_latent(
        self, inverted: InvertedLatents, cfg: PnPConfig, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_T of the guided rows: the inverted latent (PnP) or seeded noise (scheme 1).

        With a subject ``mask`` (1, 1, H, W) and ``cfg.background_noise`` > 0, the background
        of an inverted start is partly re-noised (``renoise_background``), so the old
        background's structure is not carried into the edit; with ``cfg.background_noise_t`` > 0
        that happens later, in ``edit``, at step ``int(steps * background_noise_t)``.
        """
        if cfg.start == "noise":
            return self._seeded_noise(inverted.clean.shape, cfg.seed)
        start = inverted.at(self.sampling_timesteps(cfg.steps)[0])
        if mask is None or cfg.background_noise == 0.0 or cfg.background_noise_t > 0.0:
            return start
        return self.renoise_background(start, mask, cfg)

    def renoise_background(
        self, latents: torch.Tensor, mask: torch.Tensor, cfg: PnPConfig
    ) -> torch.Tensor:
        """``latents`` (k, C, h, w) with the background (outside the (1, 1, H, W) subject
        ``mask``, area-resized) mixed with seeded noise: sqrt(1 - b) x + sqrt(b) noise,
        b = ``cfg.background_noise`` (variance-preserving)."""
        b = cfg.background_noise
        noise = self._seeded_noise(latents.shape[1:], cfg.seed)[None]
        renoised = (1.0 - b) ** 0.5 * latents + b**0.5 * noise
        subject = F.interpolate(mask.to(latents), size=latents.shape[-2:], mode="area")
        return torch.lerp(renoised, latents, subject)

    def _seeded_noise(self, shape: torch.Size, seed: int) -> torch.Tensor:
        """Gaussian noise drawn on the CPU (the same on every device) from ``seed``."""
        generator = torch.Generator("cpu").manual_seed(seed)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        return noise.to(device=self.device, dtype=self.dtype)

    def edit(
        self,
        inverted: InvertedLatents,
        prompts: Sequence[str],
        cfg: PnPConfig,
        mask: torch.Tensor | None = None,
        callback: SamplingCallback | None = None,
        observers: Sequence[Callable[[InjectionEvent], None]] = (),
        features: SourceFeatures | None = None,
    ) -> torch.Tensor:
        """Translate the inverted image by each prompt; returns latents (k, C, h, w).

        ``mask`` (1, 1, H, W) in [0, 1] is the subject: injection is limited to it when
        ``cfg.mask_injection``, ``cfg.background_noise`` re-noises the rest of the start, and
        with ``cfg.background_intent`` "keep" the rest is the source's inversion latents after
        every step (``keep_background``; "auto" must be resolved before, it acts as "follow").
        Prompts run ``cfg.prompt_batch_size`` at a time (all by default); a CUDA out-of-memory
        error halves the chunk and retries, down to one prompt per batch. ``observers`` see
        every injected tensor (for tests and debugging). ``features``: source-row features of
        this inversion (same sampling grid and source mode); when they cover this edit's
        injections no batch runs the source row, otherwise the source row's features are
        recorded into them (and later chunks replay them).
        """
        cfg.validate()
        if not prompts:
            raise ValueError("prompts is empty: give at least one target prompt")
        sites = find_injection_sites(self.unet, cfg.residual_blocks, cfg.attention_blocks)
        injection_mask = mask if cfg.mask_injection else None
        cells: CellReduction = "cover" if cfg.mask_cells == "cover" else "area"  # auto: area
        settings = InjectionSettings(
            cfg.injection,
            cfg.blend_alpha,
            injection_mask,
            full_scale=cfg.full_injection_scale,
            full_steps=int(cfg.steps * cfg.full_injection_t),
            background_attention=cfg.background_attention,
            masked_features=cfg.masked_features,
            background_injection=cfg.background_injection,
            mask_cells=cells,
            background_weight=cfg.background_weight or 0.0,
        )
        before_step = None
        if mask is not None and cfg.background_noise > 0.0 and cfg.background_noise_t > 0.0:
            renoise_at = int(cfg.steps * cfg.background_noise_t)
            subject_mask = mask

            def before_step(index: int, latents: torch.Tensor) -> torch.Tensor:
                if index != renoise_at:
                    return latents
                return self.renoise_background(latents, subject_mask, cfg)

        after_step: LatentsStep | None = None
        if mask is not None and cfg.background_intent == "keep":
            after_step = keep_background(inverted, self.sampling_timesteps(cfg.steps), mask)
        words = None
        text_attention: AbstractContextManager[SubjectTextAttention | None] = nullcontext()
        if mask is not None and cfg.subject_words.strip():
            words = self.subject_tokens(prompts, cfg.subject_words)
            latent_hw = (inverted.clean.shape[-2], inverted.clean.shape[-1])
            text_attention = SubjectTextAttention(self.unet, mask, latent_hw, cells)
        uncond = self.encode_text([cfg.negative_prompt])
        cond = self.encode_text(prompts)
        start = self.start_latent(inverted, cfg, mask)
        chunk = cfg.prompt_batch_size or len(prompts)
        schedule = injection_schedule(cfg, self.sampling_timesteps(cfg.steps), 1)
        needed = needed_features(schedule, sites)
        results: list[torch.Tensor] = []
        with (
            FeatureInjector(self.unet, sites, settings) as injector,
            text_attention as subject_text,
            self.sd.progress_bar(total=cfg.steps * len(prompts)) as bar,
        ):
            bar.set_description("edit")
            injector.observers.extend(observers)
            injector.features = features
            done = 0
            while done < len(prompts):
                # composed attention needs the source row's logits, not only its Q/K: no replay
                injector.replay = (
                    features is not None
                    and features.covers(needed)
                    and settings.background_attention != "source"
                )
                rows = slice(done, min(done + chunk, len(prompts)))
                k = rows.stop - rows.start
                if subject_text is not None and words is not None:
                    subject_text.tokens = words[rows]
                text = TextConditions(
                    inverted.source_embedding, uncond.expand(k, -1, -1), cond[rows]
                )
                try:
                    latents = pnp_sample(
                        self.unet,
                        self.scheduler,
                        injector,
                        inverted,
                        text,
                        start,
                        cfg,
                        callback=callback,
                        progress=partial(_advance, bar, k),
                        before_step=before_step,
                        after_step=after_step,
                    )
                except torch.OutOfMemoryError as err:
                    if chunk == 1:
                        raise OutOfMemoryError(
                            "out of accelerator memory even with one prompt per batch; try "
                            "model.dtype fp16, model.cpu_offload or a smaller preprocess.size"
                        ) from err
                    chunk = max(1, chunk // 2)
                    warnings.warn(
                        f"out of memory: retrying with {chunk} prompt(s) per batch", stacklevel=2
                    )
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    continue
                results.append(latents)
                done = rows.stop
        return torch.cat(results)


def _advance(bar: Any, prompts: int, steps: int) -> None:
    bar.update(steps * prompts)
