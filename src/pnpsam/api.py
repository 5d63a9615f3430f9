"""The Python API: load once, edit many. PIL in, PIL out.

>>> from pnpsam import PnPEditor
>>> editor = PnPEditor.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", device="cuda")
>>> result = editor.edit("horse.jpg", ["a photo of a robot horse", "a zebra"])
>>> result.images[0].save("robot.png")

The inversion of an image depends only on (image, preprocessing, inversion settings, sampling
steps); ``editor.invert`` returns it as an object that any number of ``edit`` calls reuse, and
the editor also remembers the last one so repeated edits of the same image skip it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from pnpsam.config import (
    DEFAULT_MODEL_ID,
    EditConfig,
    InversionConfig,
    ModelConfig,
    PnPConfig,
    PreprocessConfig,
)
from pnpsam.imageio import load_image, pil_to_tensor_range, prepare_image, to_rgb
from pnpsam.inversion import InvertedLatents
from pnpsam.models.loading import load_stable_diffusion
from pnpsam.pipeline import PnPPipeline
from pnpsam.sampling import SamplingCallback

ImageInput = str | os.PathLike[str] | Image.Image | np.ndarray


@dataclass
class Inversion:
    """An inverted source image: the prepared picture and its latents at every sampling step."""

    image: Image.Image  # the model input, after resizing/cropping (RGB)
    latents: InvertedLatents
    preprocess: PreprocessConfig
    inversion: InversionConfig
    sampling_steps: int
    image_sha256: str
    seconds: float


@dataclass
class EditResult:
    """Output of ``PnPEditor.edit``: one image per prompt, and what made them."""

    images: list[Image.Image]
    prompts: list[str]
    config: EditConfig
    source: Image.Image  # the prepared source image the edit started from
    timings: dict[str, float] = field(default_factory=dict)
    latents: torch.Tensor | None = None  # (k, C, h, w) final latents
    image_sha256: str = ""


def _sha256_of(image: Image.Image) -> str:
    digest = hashlib.sha256(f"{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _as_pil(image: ImageInput, max_pixels: int) -> Image.Image:
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"array images must be HxW or HxWxC uint8; got {image.dtype} {image.shape}"
            )
        return to_rgb(Image.fromarray(image))
    return load_image(image, max_pixels)


class PnPEditor:
    """Text-driven image translation with Plug-and-Play diffusion features."""

    def __init__(self, pipeline: PnPPipeline, model: ModelConfig) -> None:
        self.pipeline = pipeline
        self.model = model
        self._last_inversion: tuple[tuple[Any, ...], Inversion] | None = None

    @classmethod
    def from_pretrained(
        cls, model: str | ModelConfig = DEFAULT_MODEL_ID, **model_options: Any
    ) -> PnPEditor:
        """Load a checkpoint: hub id, diffusers folder or .safetensors file.

        ``model_options`` are ``ModelConfig`` fields: device, dtype, cpu_offload, revision,
        allow_pickle, single_file_config.
        """
        cfg = model if isinstance(model, ModelConfig) else ModelConfig(model=model, **model_options)
        sd, device = load_stable_diffusion(cfg)
        return cls(PnPPipeline(sd, device), cfg)

    # -- steps ---------------------------------------------------------------------------
    def default_config(self) -> EditConfig:
        """An ``EditConfig`` with this editor's model and the model's native image size."""
        return self.resolve(EditConfig())

    def resolve(self, config: EditConfig) -> EditConfig:
        """A validated copy of ``config`` with this editor's model and the image size filled in."""
        cfg = EditConfig.from_dict(config.to_dict())
        cfg.model = dataclasses.replace(self.model)
        if cfg.preprocess.size is None:
            cfg.preprocess.size = self.pipeline.native_size
        return cfg.validate()

    def prepare(self, image: ImageInput, preprocess: PreprocessConfig) -> Image.Image:
        """Load (if a path) and resize/crop ``image`` to the model input size."""
        preprocess.validate()
        size = preprocess.size or self.pipeline.native_size
        pil = _as_pil(image, preprocess.max_input_pixels)
        return prepare_image(pil, preprocess, size, self.pipeline.size_multiple)

    def invert(self, image: ImageInput, config: EditConfig | None = None) -> Inversion:
        """DDIM-invert ``image`` once; pass the result to ``edit`` for any number of prompts."""
        cfg = self.resolve(config or EditConfig())
        prepared = self.prepare(image, cfg.preprocess)
        sha = _sha256_of(prepared)
        key = (sha, repr(cfg.preprocess), repr(cfg.inversion), cfg.pnp.steps)
        if self._last_inversion is not None and self._last_inversion[0] == key:
            return self._last_inversion[1]
        start = time.perf_counter()
        tensor = torch.from_numpy(pil_to_tensor_range(prepared))
        latents = self.pipeline.invert(tensor, cfg.inversion, cfg.pnp.steps)
        inversion = Inversion(
            prepared,
            latents,
            dataclasses.replace(cfg.preprocess),
            dataclasses.replace(cfg.inversion),
            cfg.pnp.steps,
            sha,
            time.perf_counter() - start,
        )
        self._last_inversion = (key, inversion)
        return inversion

    def edit(
        self,
        image: ImageInput | Inversion,
        prompts: str | Sequence[str],
        config: EditConfig | None = None,
        mask: torch.Tensor | None = None,
        callback: SamplingCallback | None = None,
        **pnp_overrides: Any,
    ) -> EditResult:
        """Translate ``image`` by each prompt; returns one PIL image per prompt.

        ``pnp_overrides`` are ``PnPConfig`` fields (guidance=10, pnp_f_t=0.5, ...).
        ``mask`` (1, 1, H, W) in [0, 1] restricts injection to the subject (1 = subject).
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("prompts is empty: give at least one target prompt")
        if any(not isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be strings; got {prompts!r}")
        cfg = self.resolve(config or EditConfig())
        cfg.pnp = dataclasses.replace(cfg.pnp, **pnp_overrides)
        cfg.pnp.validate()
        if isinstance(image, Inversion):
            inversion = image
            if inversion.sampling_steps != cfg.pnp.steps:
                inversion.latents.check_grid(self.pipeline.sampling_timesteps(cfg.pnp.steps))
            cfg.preprocess, cfg.inversion = inversion.preprocess, inversion.inversion
        else:
            inversion = self.invert(image, cfg)
        start = time.perf_counter()
        latents = self.pipeline.edit(inversion.latents, prompts, cfg.pnp, mask, callback)
        sampled = time.perf_counter()
        pixels = self.pipeline.decode(latents)
        decoded = time.perf_counter()
        images = [
            Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
            for x in pixels
        ]
        return EditResult(
            images=images,
            prompts=prompts,
            config=cfg,
            source=inversion.image,
            timings={
                "inversion_s": inversion.seconds,
                "sampling_s": sampled - start,
                "decode_s": decoded - sampled,
            },
            latents=latents,
            image_sha256=inversion.image_sha256,
        )


def unet_evaluations(cfg: PnPConfig, inversion: InversionConfig, num_prompts: int) -> int:
    """UNet row-evaluations (batch rows x steps) one image with ``num_prompts`` prompts costs."""
    injecting = max(cfg.residual_steps, cfg.attention_steps)
    per_chunk_source = injecting  # the source row runs only while something is injected
    chunks = -(-num_prompts // (cfg.prompt_batch_size or num_prompts))
    return inversion.steps + chunks * per_chunk_source + 2 * num_prompts * cfg.steps
