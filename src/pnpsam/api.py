"""The Python API: load once, edit many. PIL in, PIL out.

>>> from pnpsam import PnPEditor
>>> editor = PnPEditor.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5", device="cuda")
>>> result = editor.edit("horse.jpg", ["a photo of a robot horse", "a zebra"])
>>> result.images[0].save("robot.png")

The inversion of an image depends only on (inverted pixels, preprocessing, inversion settings,
model, sampling grid); ``editor.invert`` returns it as an object that any number of ``edit``
calls reuse, and the editor keeps recent ones in an ``InversionStore`` (keyed by exactly those)
so repeated edits of the same image skip it. With ``cache_dir`` (or ``editor.cache =
InversionCache(folder)``) inverted latents are also kept on disk, so a new process skips the
inversion of a photo it has seen. ``EditResult.record()`` is the JSON record from which
``pnpsam edit --config`` reproduces the images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pnpsam.config import (
    DEFAULT_MODEL_ID,
    MODEL_DEFAULTS_FILE,
    ConfigError,
    EditConfig,
    InversionConfig,
    ModelConfig,
    PnPConfig,
    PreprocessConfig,
    SubjectPolicy,
    config_for_model,
    model_defaults,
    prompt_list,
    short_repr,
)
from pnpsam.core.callbacks import EditStopped, RowCounter, StepCallback, StepCallbacks
from pnpsam.core.features import SourceFeatures
from pnpsam.core.injection import InjectionSiteError
from pnpsam.core.inversion import InvertedLatents, TimestepGridError
from pnpsam.core.pipeline import PnPPipeline
from pnpsam.core.sampling import SamplingPlan
from pnpsam.errors import InputError
from pnpsam.imageio import (
    ImageInput,
    as_rgb_image,
    from_float_array,
    image_digest,
    pil_to_tensor_range,
    prepare_image,
    to_float_array,
)
from pnpsam.masks import MaskMaker, SubjectMask, WeakenConfig, finish_mask
from pnpsam.masks.weaken import paste_background, restore_brightness, weaken_background
from pnpsam.models.loading import load_stable_diffusion
from pnpsam.models.memory import HalveOnOutOfMemory, OutOfMemoryError
from pnpsam.store import FeaturesKey, InversionCache, InversionKey, InversionStore

# The errors a caller may catch are re-exported here, so front ends never import the core.
__all__ = [
    "EditPlan",
    "EditResult",
    "EditStopped",
    "ImageInput",
    "InjectionSiteError",
    "Inversion",
    "OutOfMemoryError",
    "PnPEditor",
    "StepCallback",
    "TimestepGridError",
    "package_versions",
    "unet_evaluations",
]


@dataclass
class Inversion:
    """An inverted source image: the prepared picture, its subject and its latents.

    ``image`` is the model input after resizing/cropping; ``inverted_image`` is what was
    actually inverted (``image`` with the background weakened, when asked). ``subject`` is the
    subject mask at the model input size, or None for plain PnP.
    """

    image: Image.Image
    inverted_image: Image.Image
    subject: SubjectMask | None
    latents: InvertedLatents
    preprocess: PreprocessConfig
    inversion: InversionConfig
    weaken: WeakenConfig
    sampling_steps: int
    image_sha256: str
    seconds: float
    unet_evaluations: int = 0  # UNet row-evaluations the inversion cost when it was made
    reused: bool = False  # True when this object came from the editor's store or disk cache
    cached: bool = False  # True when its latents were read from the on-disk cache
    key: InversionKey | None = None  # what it depends on (``PnPEditor.inversion_key``)
    # where ``subject`` came from: the mask config's sources, or "array" for a given mask
    mask_sources: dict[str, Any] = field(default_factory=dict)
    # the subject-aware policy, decided when the subject was found: ``weaken`` is already
    # resolved by it, and every edit of this inversion resolves its PnP subject fields by it
    policy: SubjectPolicy = field(default_factory=SubjectPolicy)

    @property
    def usable_subject(self) -> SubjectMask | None:
        """``subject`` when it is usable (not empty), else None: what edits restrict to."""
        return self.subject if self.subject is not None and self.subject.usable else None


@dataclass(frozen=True)
class EditPlan:
    """What one ``PnPEditor.edit`` runs, decided once before its first UNet call.

    ``config``: the resolved config that runs and that the record states (the inversion's
    preprocessing, inversion and weakening, the subject policy applied to ``pnp``);
    ``sampling``: its ``SamplingPlan`` (``config.pnp``, the timesteps, the injection sites).
    """

    config: EditConfig
    sampling: SamplingPlan


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
    subject: SubjectMask | None = None  # the subject mask used (model input size)
    model: dict[str, Any] = field(default_factory=dict)  # id, revision, resolved path, commit
    device: str = ""
    # UNet row-evaluations (batch rows x calls) this edit made, counted: the inversion's rows
    # are included unless the inversion was reused (given, or found in the editor's store)
    unet_evaluations: int = 0
    inversion_reused: bool = False
    inversion_cached: bool = False  # the inversion's latents were read from the disk cache

    def record(
        self,
        image: str | os.PathLike[str] | None = None,
        outputs: Sequence[str] = (),
        timings: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        """The JSON-ready record of this edit; ``pnpsam edit --config`` of it reproduces it.

        ``image``: the input file (stored as an absolute path); ``outputs``: the file names the
        front end wrote, one per prompt; ``timings``: extra timings (e.g. ``load_s``) first.
        """
        found = package_versions()
        return {
            "pnpsam": found["pnpsam"],
            "image": str(Path(image).resolve()) if image is not None else None,
            "image_sha256": self.image_sha256,
            "prompts": list(self.prompts),
            "outputs": list(outputs),
            "subject_mask": self.subject.provenance() if self.subject is not None else None,
            "config": self.config.to_dict(),
            "model": dict(self.model),
            "device": self.device,
            # CPU kernels split their sums by thread: a replay at another count may differ in
            # the last bits (``pnpsam edit --config`` says so)
            "torch_threads": torch.get_num_threads(),
            "versions": found,
            "timings": {**(timings or {}), **self.timings},
            "unet_evaluations": self.unet_evaluations,
            "inversion_reused": self.inversion_reused,
            "inversion_cached": self.inversion_cached,
        }


def _check_keywords(
    where: str, given: dict[str, Any], config: type, exclude: Sequence[str] = ()
) -> None:
    """Refuse keywords that are not fields of ``config``, listing the valid ones."""
    valid = sorted(f.name for f in dataclasses.fields(config) if f.name not in exclude)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ConfigError(f"{where}() got unknown keyword(s) {unknown}; valid: {valid}")


def _mask_sources(cfg: EditConfig, mask: np.ndarray | None) -> dict[str, Any]:
    """The subject sources an edit names: config.mask's (non-empty) and a given array."""
    fields = ("points", "neg_points", "box", "subject", "mask_file")
    named = {k: getattr(cfg.mask, k) for k in fields if getattr(cfg.mask, k)}
    if mask is not None:
        named["array"] = hashlib.sha256(np.ascontiguousarray(mask).tobytes()).hexdigest()[:16]
    return named


def package_versions() -> dict[str, str]:
    """Installed versions of pnp-sam and the libraries that decide its pixels."""
    found = {}
    for package in ("pnpsam", "torch", "diffusers", "transformers", "accelerate"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


class PnPEditor:
    """Text-driven image translation with Plug-and-Play diffusion features."""

    def __init__(
        self,
        pipeline: PnPPipeline,
        model: ModelConfig,
        store: InversionStore[Inversion] | None = None,
        cache: InversionCache | None = None,
        feature_bytes: int = 0,
    ) -> None:
        self.pipeline = pipeline
        self.model = model
        self.masks = MaskMaker(pipeline.device)  # keeps SAM and its last image embedding
        # recent inversions by what they depend on; InversionStore(max_items=0) keeps none
        self.store: InversionStore[Inversion] = store if store is not None else InversionStore()
        # inverted latents on disk, shared by processes; None = no disk cache
        self.cache: InversionCache | None = cache
        # the source stream's features of recent inversions, on the device, within
        # ``feature_bytes``: a re-edit then costs 2 x steps rows per prompt; 0 keeps none
        self.source_features: InversionStore[SourceFeatures] = InversionStore(
            max_items=8, max_bytes=feature_bytes
        )
        self._img2img: Any = None  # diffusers img2img on the same modules, made by ``sdedit``
        # device policy: how prompt chunks run (out of memory: halve the chunk and retry)
        self.memory = HalveOnOutOfMemory()

    @classmethod
    def from_pretrained(
        cls,
        model: str | ModelConfig = DEFAULT_MODEL_ID,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        feature_bytes: int = 0,
        **model_options: Any,
    ) -> PnPEditor:
        """Load a checkpoint: hub id, diffusers folder or .safetensors file.

        ``cache_dir``: a folder for the on-disk inversion cache (``InversionCache``; created
        when first written), shared by processes and runs: a photo inverted once is not
        inverted again with the same model and settings. ``feature_bytes``: memory (device)
        for keeping the source stream's features of recent photos, so re-editing one costs
        exactly 2 x steps UNet rows per prompt (``config.INTERACTIVE_FEATURE_BYTES`` suits an app;
        0, the default, keeps none; ``editor.source_features.max_bytes`` changes it later).
        ``model_options`` are
        ``ModelConfig`` fields: device, dtype, cpu_offload, revision, allow_pickle,
        single_file_config.
        """
        _check_keywords("from_pretrained", model_options, ModelConfig, exclude=("model",))
        if isinstance(model, ModelConfig):
            if model_options:
                raise ConfigError(
                    f"from_pretrained got a ModelConfig and also {sorted(model_options)}; "
                    "set them on the ModelConfig"
                )
            cfg = model
        elif isinstance(model, str | os.PathLike):
            cfg = ModelConfig(model=str(model), **model_options)
        else:
            raise ConfigError(
                f"model must be a hub id, a folder or file path, or a ModelConfig; got "
                f"{type(model).__name__} {short_repr(model)}"
            )
        cfg.validate()
        cache = InversionCache(cache_dir) if cache_dir is not None else None
        sd, device = load_stable_diffusion(cfg)
        return cls(PnPPipeline(sd, device), cfg, cache=cache, feature_bytes=feature_bytes)

    @property
    def device(self) -> torch.device:
        return self.pipeline.device

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        """tqdm options of the inversion and sampling bars, e.g. ``disable=True`` for none."""
        self.pipeline.sd.set_progress_bar_config(**kwargs)

    def model_info(self) -> dict[str, Any]:
        """Which weights run: the given id, revision, resolved path, hub commit and dtype."""
        resolved = str(self.pipeline.sd.config.get("_name_or_path", self.model.model))
        commit = re.search(r"/snapshots/([0-9a-f]{40})", resolved)
        return {
            "id": self.model.model,
            "revision": self.model.revision,
            "resolved_path": resolved,
            "commit": commit.group(1) if commit else None,
            "dtype": str(self.pipeline.dtype).removeprefix("torch."),
        }

    def inversion_key(self, inverted_sha256: str, cfg: EditConfig) -> InversionKey:
        """The store key of inverting pixels with digest ``inverted_sha256`` under ``cfg``."""
        model = {**self.model_info(), "device": self.pipeline.device.type}
        return InversionKey.of(
            inverted_sha256,
            cfg.preprocess,
            cfg.inversion,
            model,
            self.pipeline.sampling_timesteps(cfg.pnp.steps),
        )

    # -- steps ---------------------------------------------------------------------------
    def _model_config(self) -> EditConfig:
        """``config_for_model`` of this editor's model; where the model's name says nothing of
        its injection sites (a pipeline built in memory, a hub id not in the cache), the
        loaded UNet's (``PnPPipeline.pnp_blocks``)."""
        config = config_for_model(self.model.model)
        recommended = model_defaults(self.model.model).get("pnp", {})
        if not {"residual_blocks", "attention_blocks"} & set(recommended):
            config.pnp.residual_blocks, config.pnp.attention_blocks = self.pipeline.pnp_blocks()
        return config

    def default_config(self) -> EditConfig:
        """An ``EditConfig`` for this editor's model: the defaults under the settings the model
        folder recommends (its ``pnpsam_defaults.json``: injected blocks, guidance, negative
        prompt...) and the model's native image size. Start custom configs from this one."""
        return self.resolve(self._model_config())

    def resolve(
        self, config: EditConfig, pnp_overrides: Mapping[str, Any] | None = None
    ) -> EditConfig:
        """A validated copy of ``config`` with this editor's model and the image size filled in,
        and ``pnp_overrides`` (``PnPConfig`` fields) set.

        Injection blocks this UNet lacks are refused here, before any work, naming the blocks
        the model recommends when it has any.
        """
        if not isinstance(config, EditConfig):
            raise ConfigError(
                f"config must be an EditConfig; got {type(config).__name__} "
                f"{short_repr(config)} (EditConfig.from_dict builds one from nested dicts)"
            )
        cfg = EditConfig.from_dict(config.to_dict())
        cfg.model = dataclasses.replace(self.model)
        if cfg.preprocess.size is None:
            cfg.preprocess.size = self.pipeline.native_size
        if pnp_overrides:
            _check_keywords("edit", dict(pnp_overrides), PnPConfig)  # named as edit's keywords
            cfg.pnp = dataclasses.replace(cfg.pnp, **pnp_overrides)
        cfg.validate()
        try:
            self.pipeline.injection_sites(cfg.pnp.residual_blocks, cfg.pnp.attention_blocks)
        except InjectionSiteError as error:
            recommended = model_defaults(self.model.model).get("pnp", {})
            blocks = {k: v for k, v in recommended.items() if k.endswith("_blocks")}
            if not blocks:
                raise
            advice = ", ".join(f"{name} {value}" for name, value in blocks.items())
            raise InjectionSiteError(
                f"{error}; this model recommends {advice} (its backbone's PnP sites or its "
                f"{MODEL_DEFAULTS_FILE})"
            ) from error
        return cfg

    def prepare(self, image: Image.Image, preprocess: PreprocessConfig) -> Image.Image:
        """Resize/crop an RGB image (or an "L" mask) to the model input size."""
        size = preprocess.size or self.pipeline.native_size
        return prepare_image(image, preprocess, size, self.pipeline.size_multiple)

    def subject_mask(
        self, image: Image.Image, cfg: EditConfig, mask: np.ndarray | None = None
    ) -> SubjectMask | None:
        """The subject mask at the model input size, from ``mask`` or ``cfg.mask``'s sources.

        Clicks, boxes and mask files are in the coordinates of the original ``image``; the mask
        is made there, then resized/cropped exactly like the image. ``mask``: HxW bool or float
        in [0, 1] at the original size (1 = subject), overriding ``cfg.mask``'s sources.
        """
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float32)
            if mask.ndim != 2:
                raise InputError(
                    f"mask must be HxW (one value per pixel, 1 = subject); got shape {mask.shape}"
                )
            if mask.shape != (image.height, image.width):
                raise InputError(
                    f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                    f"{image.width}x{image.height}"
                )
            raw: SubjectMask | None = finish_mask(SubjectMask(mask, "array"), cfg.mask)
        else:
            raw = self.segment(image, cfg)
        if raw is None:
            return None
        prepared = self.prepare(from_float_array(raw.mask), cfg.preprocess)  # mode "L"
        resized = np.asarray(prepared, np.float32) / 255.0
        return dataclasses.replace(raw, mask=resized)

    def segment(self, image: ImageInput, config: EditConfig | None = None) -> SubjectMask | None:
        """The subject mask of ``image`` at the image's own size from ``config.mask`` (clicks,
        box, text or mask file, then the mask tools), or None when it names no source.

        SAM and its embedding of the last image are kept, so calling this on every click of the
        same image costs only SAM's mask decoder.
        """
        cfg = config or EditConfig()
        pixels = np.asarray(as_rgb_image(image, cfg.preprocess.max_input_pixels))
        return self.masks.make(pixels, cfg.mask)

    def invert(
        self, image: ImageInput, config: EditConfig | None = None, mask: np.ndarray | None = None
    ) -> Inversion:
        """DDIM-invert ``image`` once; pass the result to ``edit`` for any number of prompts.

        With a subject (``mask`` or ``config.mask``) and ``config.weaken.background`` set, the
        background is weakened in pixels before inversion (the report's scheme 3); "auto" is
        left unweakened only when ``config.pnp.background_intent`` is "keep" (an "auto" intent
        is resolved by ``edit``, which knows the prompts; here it counts as "follow").
        """
        cfg = self.resolve(config if config is not None else self._model_config())
        return self._invert(image, cfg.resolve_derived(), mask)

    def _invert(
        self,
        image: ImageInput,
        cfg: EditConfig,
        mask: np.ndarray | None,
        callback: StepCallback | None = None,
    ) -> Inversion:
        """``invert`` under a resolved config (``resolve``, then ``resolve_derived``);
        ``callback`` runs after every inversion step."""
        # 1. prepare the picture and find the subject; the subject policy is decided here
        original = as_rgb_image(image, cfg.preprocess.max_input_pixels)
        prepared = self.prepare(original, cfg.preprocess)
        subject = self.subject_mask(original, cfg, mask)
        usable = subject is not None and subject.usable
        policy = SubjectPolicy.decide(cfg.weaken.background, usable, cfg.pnp.background_intent)
        weaken = policy.weaken(cfg.weaken)
        if subject is None and weaken.background != "keep":
            raise ConfigError(
                f"background={weaken.background!r} needs a subject: give points, a box, "
                "a subject text, a mask file or a mask array"
            )
        # 2. weaken the background in pixels (``weaken``: the report's scheme 3)
        inverted_image = prepared
        if subject is not None and subject.usable and weaken.background != "keep":
            weakened = weaken_background(
                to_float_array(prepared), subject.mask, weaken.background, weaken.dim_factor
            )
            inverted_image = from_float_array(weakened)
        # 3. reuse a kept inversion of the same pixels, with this call's subject
        sha = image_digest(inverted_image)
        key = self.inversion_key(sha, cfg)
        stored = self.store.get(key)
        if stored is not None:
            return dataclasses.replace(
                stored,
                image=prepared,
                subject=subject,
                weaken=weaken,
                reused=True,
                cached=False,
                mask_sources=_mask_sources(cfg, mask),
                policy=policy,
            )
        # 4. read the latents from the disk cache, or invert
        start = time.perf_counter()
        latents = self._from_disk(key, inverted_image, cfg)
        counted = RowCounter()
        if latents is None:
            tensor = torch.from_numpy(pil_to_tensor_range(inverted_image))
            hooks = StepCallbacks([counted, *([callback] if callback is not None else [])])
            latents = self.pipeline.invert(tensor, cfg.inversion, cfg.pnp.steps, hooks)
            if self.cache is not None:
                self.cache.put(key, latents.clean, latents.by_timestep, latents.inversion_steps)
        # 5. keep it, and return it
        inversion = Inversion(
            image=prepared,
            inverted_image=inverted_image,
            subject=subject,
            latents=latents,
            preprocess=dataclasses.replace(cfg.preprocess),
            inversion=dataclasses.replace(cfg.inversion),
            weaken=weaken,
            sampling_steps=cfg.pnp.steps,
            image_sha256=sha,
            seconds=time.perf_counter() - start,
            unet_evaluations=counted.rows,
            reused=counted.rows == 0,
            cached=counted.rows == 0,
            key=key,
            mask_sources=_mask_sources(cfg, mask),
            policy=policy,
        )
        self.store.put(key, dataclasses.replace(inversion, reused=False, cached=False))
        return inversion

    def _from_disk(
        self, key: InversionKey, inverted_image: Image.Image, cfg: EditConfig
    ) -> InvertedLatents | None:
        """The inverted latents of ``key`` from the disk cache, or None (absent or unusable)."""
        if self.cache is None:
            return None
        shape = self.pipeline.latent_shape(inverted_image.height, inverted_image.width)
        found = self.cache.get(key, shape, self.pipeline.dtype)
        if found is None:
            return None
        device = self.pipeline.device
        clean = found.clean.to(device)
        # the text embedding (and SDXL's added conditioning) is recomputed, not stored
        embedding, added = self.pipeline.encode_prompts(
            [cfg.inversion.prompt], self.pipeline.image_hw(clean)
        )
        return InvertedLatents(
            clean=clean,
            by_timestep={t: x.to(device) for t, x in found.by_timestep.items()},
            inversion_steps=found.inversion_steps,
            source_embedding=embedding,
            source_added=added,
        )

    def edit(
        self,
        image: ImageInput | Inversion,
        prompts: str | Sequence[str],
        config: EditConfig | None = None,
        mask: np.ndarray | None = None,
        callback: StepCallback | None = None,
        inversion_callback: StepCallback | None = None,
        **pnp_overrides: Any,
    ) -> EditResult:
        """Translate ``image`` by each prompt; returns one PIL image per prompt.

        ``pnp_overrides`` are ``PnPConfig`` fields (guidance=10, pnp_f_t=0.5, ...). ``mask``
        (HxW in [0, 1] at the image's size, 1 = subject) or ``config.mask`` names the subject:
        injection then stops at it (``mask_injection``), and ``config.weaken`` applies.
        ``callback`` (``StepCallback``) runs after every sampling step: it may change the
        latents or raise ``EditStopped``, which ends the edit (nothing of it is kept) and
        reaches the caller. ``inversion_callback`` runs after every inversion step (when the
        image is inverted here): it may observe or raise ``EditStopped`` (nothing is kept).
        ``pnp.background_intent`` "auto" is resolved here from the prompts (``intent_for``) and
        the result records the value that ran ("follow" or "keep").
        """
        # 1. check the inputs; resolve the config once
        prompts = prompt_list(prompts)
        base = config if config is not None else self._model_config()
        asked = self.resolve(base, pnp_overrides).resolve_derived()
        # 2. the background intent ("auto" made concrete from the prompts), then invert the
        #    image or reuse the given inversion
        given = isinstance(image, Inversion)
        weakening = image.weaken.background if isinstance(image, Inversion) else None
        if mask is not None or asked.mask.has_source or given:
            asked.pnp.background_intent = asked.pnp.intent_for(
                prompts, weakening or asked.weaken.background
            )
        elif asked.pnp.background_intent == "keep":
            raise ConfigError(
                "pnp.background_intent 'keep' keeps the background around a subject: give "
                "points, a box, a subject text, a mask file or a mask array"
            )
        if isinstance(image, Inversion):
            self._check_given(image, asked, mask)
            inversion = image
        else:
            inversion = self._invert(image, asked, mask, inversion_callback)
        reused = given or inversion.reused
        # 3. plan: the config that runs (and is recorded), its timesteps and injection sites
        plan = self.plan(asked, inversion)
        # 4. sample
        start = time.perf_counter()
        latents, rows = self._sample(inversion, prompts, plan, callback)
        sampled = time.perf_counter()
        # 5. decode, and restore the brightness a weakened background lost
        images = self._decode(latents, inversion, plan.config)
        decoded = time.perf_counter()
        # 6. assemble the result
        return EditResult(
            images=images,
            prompts=prompts,
            config=plan.config,
            source=inversion.image,
            timings={
                "inversion_s": 0.0 if reused else inversion.seconds,
                "sampling_s": sampled - start,
                "decode_s": decoded - sampled,
            },
            latents=latents,
            image_sha256=inversion.image_sha256,
            subject=inversion.subject,
            model=self.model_info(),
            device=str(self.pipeline.device),
            unet_evaluations=rows + (0 if reused else inversion.unet_evaluations),
            inversion_reused=reused,
            inversion_cached=inversion.cached,
        )

    def _check_given(
        self, inversion: Inversion, asked: EditConfig, mask: np.ndarray | None
    ) -> None:
        """Refuse an edit of a given ``Inversion`` that names another subject."""
        named = _mask_sources(asked, mask)
        if named and named != inversion.mask_sources:
            # the subject was fixed when the image was inverted; silently dropping these
            # would edit a different subject than the caller names
            raise ConfigError(
                f"the subject of an Inversion is fixed when it is made; this edit also "
                f"gives {sorted(named)} ({short_repr(named)}), which an Inversion cannot use. "
                "Pass them to editor.invert(...), or pass the image instead"
            )

    def plan(self, asked: EditConfig, inversion: Inversion) -> EditPlan:
        """The plan of editing ``inversion`` under the resolved config ``asked``: the
        inversion's preprocessing, inversion and weakening, the PnP subject fields resolved by
        its subject policy, and the sampling plan (timesteps, injection sites)."""
        config = dataclasses.replace(
            asked,
            preprocess=dataclasses.replace(inversion.preprocess),
            inversion=dataclasses.replace(inversion.inversion),
            weaken=dataclasses.replace(inversion.weaken),
            pnp=inversion.policy.pnp(asked.pnp),
        )
        if inversion.usable_subject is None:  # no subject (or an empty mask): nothing to keep
            config.pnp.background_intent = "follow"
        sampling = self.pipeline.plan(config.pnp)
        if inversion.sampling_steps != config.pnp.steps:
            inversion.latents.check_grid(sampling.timesteps)
        return EditPlan(config, sampling)

    def _sample(
        self,
        inversion: Inversion,
        prompts: list[str],
        plan: EditPlan,
        callback: StepCallback | None,
    ) -> tuple[torch.Tensor, int]:
        """The final latents (k, C, h, w) of ``plan`` and the UNet rows they took, reusing and
        then keeping this inversion's source features (within their budget)."""
        subject = inversion.usable_subject
        subject_tensor = None
        if subject is not None:
            subject_tensor = torch.from_numpy(subject.mask)[None, None].to(self.pipeline.device)
        features_key, features = self._source_features(inversion, plan.sampling)
        complete = features is not None and features.covers(plan.sampling.needed)
        counted = RowCounter()
        hooks = StepCallbacks([counted, *([callback] if callback is not None else [])])
        try:
            latents = self.pipeline.edit(
                inversion.latents,
                prompts,
                plan.sampling,
                subject_tensor,
                hooks,
                features=features,
                chunks=self.memory,
            )
        except EditStopped as stop:
            if features_key is not None and not complete:  # a part recorded: keep none of it
                self.source_features.discard(features_key)
            # raised without the sampler's frames, and this frame lets go of its tensors: a
            # caller keeping the exception keeps none of the edit's memory
            features = subject_tensor = None
            raise stop.with_traceback(None) from None
        if features_key is not None and features is not None:
            if features.overflowed:  # over the budget: keep none rather than a part
                self.source_features.discard(features_key)
            elif features.tensors:
                self.source_features.put(features_key, features)  # (re)counts its bytes
        return latents, counted.rows

    def _decode(
        self, latents: torch.Tensor, inversion: Inversion, cfg: EditConfig
    ) -> list[Image.Image]:
        """One image per latent; the brightness restored where ``cfg.weaken.restore`` says, the
        source's background pasted back for background intent "keep" by pixels."""
        pixels = self.pipeline.decode(latents).permute(0, 2, 3, 1).numpy()
        subject = inversion.usable_subject
        if subject is not None and cfg.weaken.restore != "none":
            pixels = np.stack(
                [
                    restore_brightness(
                        x,
                        subject.mask,
                        cfg.weaken.restore,
                        cfg.weaken.dim_factor,
                        source=to_float_array(inversion.image),
                    )
                    for x in pixels
                ]
            )
        pasted = cfg.pnp.background_intent == "keep" and cfg.pnp.keep_blend == "pixels"
        if subject is not None and pasted:  # last: the photo's own background, untouched
            source = to_float_array(inversion.image)
            pixels = np.stack([paste_background(x, source, subject.mask) for x in pixels])
        return [from_float_array(x) for x in pixels]

    def _source_features(
        self, inversion: Inversion, sampling: SamplingPlan
    ) -> tuple[FeaturesKey | None, SourceFeatures | None]:
        """The kept source features of this inversion and grid, or an empty recorder (or none).

        None when no budget is set or the inversion has no key (made outside ``invert``).
        """
        budget = self.source_features.max_bytes
        if budget == 0 or self.source_features.max_items == 0 or inversion.key is None:
            return None, None
        key = FeaturesKey(inversion.key, sampling.timesteps, sampling.cfg.source)
        kept = self.source_features.get(key)
        return key, kept if kept is not None else SourceFeatures(max_bytes=budget)

    def sdedit(
        self,
        image: ImageInput,
        prompts: str | Sequence[str],
        config: EditConfig | None = None,
        strength: float = 0.6,
    ) -> EditResult:
        """SDEdit baseline: diffusers' img2img on this editor's weights (no copy of them).

        Noises the prepared image to ``strength`` of the schedule and denoises it guided by each
        prompt with ``config.pnp``'s steps, guidance, negative prompt and seed.
        """
        from diffusers import AutoPipelineForImage2Image

        prompts = prompt_list(prompts)
        cfg = self.resolve(config if config is not None else self._model_config())
        if not isinstance(strength, int | float) or not 0.0 < strength <= 1.0:
            raise ConfigError(f"sdedit strength must be in (0, 1]; got {strength!r}")
        source = self.prepare(as_rgb_image(image, cfg.preprocess.max_input_pixels), cfg.preprocess)
        if self._img2img is None:  # built once; shares the editor's modules
            # SD's or SDXL's img2img, after the loaded pipeline's class
            self._img2img = AutoPipelineForImage2Image.from_pipe(self.pipeline.sd)
            self._img2img.set_progress_bar_config(disable=True)
        device = self.pipeline.device
        generator = torch.Generator(device="cpu" if device.type == "mps" else device)
        start = time.perf_counter()
        with self.pipeline.count_unet_rows() as counted:
            images = self._img2img(
                prompt=prompts,
                image=[source] * len(prompts),
                strength=float(strength),
                num_inference_steps=cfg.pnp.steps,
                guidance_scale=cfg.pnp.guidance,
                negative_prompt=[cfg.pnp.negative_prompt] * len(prompts),
                generator=generator.manual_seed(cfg.pnp.seed),
                output_type="pil",
            ).images
        return EditResult(
            images=list(images),
            prompts=prompts,
            config=cfg,
            source=source,
            timings={"sampling_s": time.perf_counter() - start},
            image_sha256=image_digest(source),
            model=self.model_info(),
            device=str(device),
            unet_evaluations=counted.rows,
        )


def unet_evaluations(cfg: PnPConfig, inversion_calls: int, num_prompts: int) -> int:
    """UNet row-evaluations (batch rows x steps) one image with ``num_prompts`` prompts costs.

    ``inversion_calls``: UNet calls of the inversion (``PnPPipeline.inversion_calls``).
    """
    injecting = max(cfg.residual_steps, cfg.attention_steps)
    per_chunk_source = injecting  # the source row runs only while something is injected
    chunks = -(-num_prompts // (cfg.prompt_batch_size or num_prompts))
    return inversion_calls + chunks * per_chunk_source + 2 * num_prompts * cfg.steps
