"""PnP on tensors: encode, invert once, sample any number of prompts, decode. No file I/O.

``PnPPipeline`` wraps the components of a loaded ``StableDiffusionPipeline`` (SD 1.x/2.x) or
``StableDiffusionXLPipeline`` (SDXL: its added conditioning is built here and carried by every
row, see ``pnpsam.core.conditioning``); the front ends (``pnpsam.api``, the CLI) turn files and
PIL images into the tensors used here.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline

from pnpsam.config import InversionConfig, PnPConfig
from pnpsam.core.callbacks import (
    KeepBackground,
    ProgressBar,
    RowCounter,
    StepCallback,
    StepCallbacks,
    StepTensors,
)
from pnpsam.core.conditioning import AddedConditions
from pnpsam.core.features import SourceFeatures
from pnpsam.core.injection import (
    CellReduction,
    FeatureInjector,
    InjectionSettings,
    InjectionSites,
    find_injection_sites,
)
from pnpsam.core.inversion import InvertedLatents, ddim_invert, inversion_timesteps
from pnpsam.core.sampling import SamplingPlan, TextConditions, pnp_sample
from pnpsam.core.subject_text import SubjectTextAttention, subject_token_weights
from pnpsam.models.backbones import from_unet_config
from pnpsam.models.loading import inverse_scheduler_for

ChunkRunner = Callable[[int, int, Callable[[slice], torch.Tensor]], list[torch.Tensor]]
"""``run(num_prompts, chunk, sample)``: the latents of ``sample(rows)`` for consecutive prompt
slices covering ``range(num_prompts)``, ``chunk`` prompts at a time, in order. The device
policy (``pnpsam.models.memory``) may retry a slice in smaller pieces."""


def in_chunks(
    num_prompts: int, chunk: int, sample: Callable[[slice], torch.Tensor]
) -> list[torch.Tensor]:
    """``ChunkRunner`` without any retry."""
    return [
        sample(slice(done, min(done + chunk, num_prompts))) for done in range(0, num_prompts, chunk)
    ]


class PnPPipeline:
    """Plug-and-Play translation on top of Stable Diffusion components.

    Images are (1, 3, H, W) tensors in [-1, 1] with H, W multiples of ``size_multiple``;
    latents are (·, C, H / vae_scale_factor, W / vae_scale_factor).
    """

    def __init__(self, sd: DiffusionPipeline, device: torch.device) -> None:
        self.sd = sd
        self.device = device
        self.unet = sd.unet
        self.vae = sd.vae
        self.scheduler = sd.scheduler
        self.inverse_scheduler = inverse_scheduler_for(sd.scheduler)
        self.dtype = sd.unet.dtype
        self._sites: dict[tuple[tuple[int, ...], tuple[int, ...]], InjectionSites] = {}

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
    @property
    def has_added_conditions(self) -> bool:
        """Whether the UNet reads SDXL's added conditioning (pooled text and time ids)."""
        return self.unet.config.get("addition_embed_type") == "text_time"

    @torch.no_grad()
    def encode_prompts(
        self, prompts: Sequence[str], image_hw: tuple[int, int]
    ) -> tuple[torch.Tensor, AddedConditions | None]:
        """(len(prompts), L, D) text states, as diffusers' ``encode_prompt`` makes them, and for
        SDXL their added conditioning for an (H, W) pixel image (None otherwise): the pooled
        text of the second encoder and the time ids of an uncropped image of that size, made
        by the SDXL pipeline's own ``encode_prompt`` and ``_get_add_time_ids``."""
        if not self.has_added_conditions:
            embeddings, _ = self.sd.encode_prompt(
                list(prompts), self.device, 1, do_classifier_free_guidance=False
            )
            return embeddings, None
        embeddings, _, pooled, _ = self.sd.encode_prompt(
            list(prompts), device=self.device, do_classifier_free_guidance=False
        )
        encoder_2 = getattr(self.sd, "text_encoder_2", None)
        projection = int(encoder_2.config.projection_dim) if encoder_2 is not None else None
        size = (int(image_hw[0]), int(image_hw[1]))
        time_ids = self.sd._get_add_time_ids(
            size, (0, 0), size, dtype=embeddings.dtype, text_encoder_projection_dim=projection
        ).to(self.device)
        added = AddedConditions(pooled.to(self.dtype), time_ids.expand(len(prompts), -1))
        return embeddings.to(self.dtype), added

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        """(len(prompts), L, D) text states, as diffusers' ``encode_prompt`` makes them."""
        return self.encode_prompts(prompts, (self.native_size, self.native_size))[0]

    def image_hw(self, latents: torch.Tensor) -> tuple[int, int]:
        """The (H, W) pixel size of latents (·, C, h, w)."""
        factor = self.vae_scale_factor
        return int(latents.shape[-2]) * factor, int(latents.shape[-1]) * factor

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

    # -- the plan -----------------------------------------------------------------------
    def sampling_timesteps(self, steps: int) -> list[int]:
        """The timesteps ``steps`` sampling steps visit, descending. Read from a copy of the
        scheduler: the sampler's own scheduler is left as it is."""
        grid = copy.copy(self.scheduler)  # set_timesteps rebinds its attributes: shallow is enough
        grid.set_timesteps(steps)
        return [int(t) for t in grid.timesteps]

    def pnp_blocks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The paper's (residual, attention) sites as this UNet's decoder numbers them
        (``Backbone.pnp_blocks``): (4,), (4..11) for SD 1.x/2.x, (1,), (1..5) for SDXL."""
        return from_unet_config("this UNet", dict(self.unet.config)).pnp_blocks()

    def injection_sites(
        self, residual_blocks: tuple[int, ...], attention_blocks: tuple[int, ...]
    ) -> InjectionSites:
        """The module names of these LDM output blocks (``find_injection_sites``), found once
        per block set; ``InjectionSiteError`` names a block this UNet lacks."""
        key = (tuple(residual_blocks), tuple(attention_blocks))
        if key not in self._sites:
            self._sites[key] = find_injection_sites(self.unet, *key)
        return self._sites[key]

    def plan(self, cfg: PnPConfig) -> SamplingPlan:
        """The sampling plan of ``cfg`` (validated here): its timesteps and injection sites."""
        cfg.validate()
        return SamplingPlan(
            cfg,
            tuple(self.sampling_timesteps(cfg.steps)),
            self.injection_sites(cfg.residual_blocks, cfg.attention_blocks),
        )

    def _planned(self, plan: SamplingPlan | PnPConfig) -> SamplingPlan:
        return plan if isinstance(plan, SamplingPlan) else self.plan(plan)

    # -- PnP -----------------------------------------------------------------------------
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
        """DDIM-invert (1, 3, H, W) ``image``; keeps x_t on the ``sampling_steps`` grid.

        ``callback`` (``StepCallback``) runs after every inversion step.
        """
        clean = self.encode_image(image)
        embedding, added = self.encode_prompts([cfg.prompt], self.image_hw(clean))
        keep = self.sampling_timesteps(sampling_steps)
        steps = cfg.steps_for(sampling_steps)
        total = self.inversion_calls(steps, sampling_steps)
        with self.sd.progress_bar(total=total) as bar:
            bar.set_description("invert")
            hooks = StepCallbacks([c for c in (callback, ProgressBar(bar)) if c is not None])
            return ddim_invert(
                self.unet,
                self.inverse_scheduler,
                clean,
                embedding,
                steps,
                keep,
                callback=hooks,
                added=added,
            )

    def start_latent(
        self,
        inverted: InvertedLatents,
        plan: SamplingPlan | PnPConfig,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_T of the guided rows: the inverted latent (PnP) or seeded noise (``start="noise"``,
        the project report's scheme 1: the layout then comes from injection alone).

        With a subject ``mask`` (1, 1, H, W) and ``background_noise`` > 0, the background
        of an inverted start is partly re-noised (``renoise_background``), so the old
        background's structure is not carried into the edit; with ``background_noise_t`` > 0
        that happens later, in ``edit``, at step ``int(steps * background_noise_t)``.
        """
        plan = self._planned(plan)
        cfg = plan.cfg
        if cfg.start == "noise":
            return self._seeded_noise(inverted.clean.shape, cfg.seed)
        start = inverted.at(plan.timesteps[0])
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

    def _delayed_renoise(self, cfg: PnPConfig, mask: torch.Tensor | None) -> int | None:
        """The step before which the background is re-noised (``background_noise_t`` > 0 with
        a subject), or None when that is not asked for."""
        if mask is None or cfg.background_noise == 0.0 or cfg.background_noise_t == 0.0:
            return None
        return int(cfg.steps * cfg.background_noise_t)

    def edit(
        self,
        inverted: InvertedLatents,
        prompts: Sequence[str],
        plan: SamplingPlan | PnPConfig,
        mask: torch.Tensor | None = None,
        callback: StepCallback | None = None,
        features: SourceFeatures | None = None,
        chunks: ChunkRunner = in_chunks,
    ) -> torch.Tensor:
        """Translate the inverted image by each prompt; returns latents (k, C, h, w).

        ``plan``: the ``SamplingPlan`` (or the ``PnPConfig`` to plan). ``mask`` (1, 1, H, W)
        in [0, 1] is the subject: injection is limited to it when ``mask_injection``, and
        ``background_noise`` re-noises the rest of the start; with ``background_intent``
        "keep" the rest is the source's inversion latents after every step
        (``KeepBackground``; "auto" must be resolved before, it acts as "follow"). Prompts run
        ``prompt_batch_size`` at a time (all by default), through ``chunks`` (the device
        policy). ``callback`` (``StepCallback``) runs after every step of every chunk; an
        ``EditStopped`` it raises ends the edit with every hook and processor removed.
        ``features``: source-row features of this inversion (same sampling grid and source
        mode); when they cover this edit's injections no batch runs the source row, otherwise
        the source row's features are recorded into them (and later chunks replay them).
        """
        # 1. check the inputs; the plan is made once (or given)
        if not prompts:
            raise ValueError("prompts is empty: give at least one target prompt")
        plan = self._planned(plan)
        cfg = plan.cfg
        # 2. encode the prompts
        image_hw = self.image_hw(inverted.clean)
        uncond, uncond_added = self.encode_prompts([cfg.negative_prompt], image_hw)
        cond, cond_added = self.encode_prompts(prompts, image_hw)
        source_added = inverted.source_added
        if self.has_added_conditions and source_added is None:
            raise ValueError(
                "this SDXL model needs the inversion's added conditioning (pooled text, time "
                "ids): InvertedLatents.source_added is None"
            )
        words = None
        if mask is not None and cfg.subject_words.strip():
            words = self.subject_tokens(prompts, cfg.subject_words)
        # 3. prepare: injection settings, the start latent, the step callbacks
        settings = self._injection_settings(cfg, mask)
        text_attention: AbstractContextManager[SubjectTextAttention | None] = nullcontext()
        if words is not None and mask is not None:
            latent_hw = (inverted.clean.shape[-2], inverted.clean.shape[-1])
            text_attention = SubjectTextAttention(self.unet, mask, latent_hw, settings.mask_cells)
        start = self.start_latent(inverted, plan, mask)
        renoise_at = self._delayed_renoise(cfg, mask)
        if renoise_at == 0 and mask is not None:  # before the first step: at x_T
            start = self.renoise_background(start, mask, cfg)
        hooks = StepCallbacks([callback] if callback is not None else [])
        chunk = cfg.prompt_batch_size or len(prompts)
        if renoise_at is not None and 0 < renoise_at < cfg.steps and mask is not None:
            hooks.callbacks.append(self._renoise_hook(renoise_at, mask, cfg))
        keeps_latents = cfg.background_intent == "keep" and cfg.keep_blend == "latents"
        if mask is not None and keeps_latents:  # first: others see the blend
            hooks.callbacks.insert(0, KeepBackground(mask))
        # 4. sample, chunk by chunk, with the injection installed once
        with (
            FeatureInjector(self.unet, plan.sites, settings) as injector,
            text_attention as subject_text,
            # one tick per denoising step of a prompt batch (all prompts of a batch step together)
            self.sd.progress_bar(total=cfg.steps * -(-len(prompts) // chunk)) as bar,
        ):
            bar.set_description("edit" if len(prompts) == 1 else f"edit ({len(prompts)} prompts)")
            hooks.callbacks.append(ProgressBar(bar))
            injector.features = features

            def sample(rows: slice) -> torch.Tensor:
                # composed attention needs the source row's logits, not only its Q/K: no replay
                injector.replay = (
                    features is not None
                    and features.covers(plan.needed)
                    and settings.background_attention != "source"
                )
                k = rows.stop - rows.start
                if subject_text is not None and words is not None:
                    subject_text.tokens = words[rows]
                text = TextConditions(
                    inverted.source_embedding,
                    uncond.expand(k, -1, -1),
                    cond[rows],
                    source_added,
                    uncond_added.expand(k) if uncond_added is not None else None,
                    cond_added[rows] if cond_added is not None else None,
                )
                return pnp_sample(
                    self.unet, self.scheduler, injector, inverted, text, start, plan, hooks
                )

            results = chunks(len(prompts), chunk, sample)
        return torch.cat(results)

    @staticmethod
    def _injection_settings(cfg: PnPConfig, mask: torch.Tensor | None) -> InjectionSettings:
        """How this edit injects (``InjectionSettings``), from its PnP settings and subject."""
        cells: CellReduction = "cover" if cfg.mask_cells == "cover" else "area"  # auto: area
        return InjectionSettings(
            cfg.injection,
            cfg.blend_alpha,
            mask if cfg.mask_injection else None,
            full_scale=cfg.full_injection_scale,
            full_steps=int(cfg.steps * cfg.full_injection_t),
            background_attention=cfg.background_attention,
            masked_features=cfg.masked_features,
            background_injection=cfg.background_injection,
            mask_cells=cells,
            background_weight=cfg.background_weight or 0.0,
        )

    def _renoise_hook(self, renoise_at: int, mask: torch.Tensor, cfg: PnPConfig) -> StepCallback:
        """A step callback re-noising the background after step ``renoise_at - 1``, so step
        ``renoise_at`` starts from it."""

        def renoise(step: int, timestep: int, tensors: StepTensors) -> StepTensors | None:
            if step + 1 != renoise_at:
                return None
            return {"latents": self.renoise_background(tensors["latents"], mask, cfg)}

        return renoise
