"""Typed configuration for one PnP edit: model, preprocessing, inversion and sampling.

Every field has a documented default; YAML/JSON files and the CLI only fill these dataclasses.
The resolved configuration is written next to every output so that any image can be reproduced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pnpsam.errors import InputError
from pnpsam.masks.config import BackgroundMode, MaskConfig, WeakenConfig

DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
# The toy-world model shipped in the package (a small SD-layout UNet; see toyworld/).
TOY_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "toy"
# The toy world at a 32x32 latent (toy v2): the same world and vocabulary, an 8x8 layer the
# size of SD's 16x16 one relative to the subject; slower (about 2.5x per edit), so the demo and
# CI use ``toy``. Its folder carries its own edit settings (residual block 2, README).
TOY_V2_MODEL_DIR = TOY_MODEL_DIR.parent / "toy_v2"
# Short names for shipped models, accepted wherever a model is named (--model toy).
MODEL_ALIASES = {"toy": TOY_MODEL_DIR, "toy-v2": TOY_V2_MODEL_DIR}
# A model folder may carry the edit settings that suit its architecture (injected blocks,
# guidance, negative prompt, size): sections and fields as in EditConfig, JSON.
MODEL_DEFAULTS_FILE = "pnpsam_defaults.json"
# The diffusers port's negative prompt (pnp-diffusers `pnp.py`).
PORT_NEGATIVE_PROMPT = "ugly, blurry, black, low res, unrealistic"
# LDM output blocks 4-11: every decoder self-attention from the paper's residual layer on.
PAPER_ATTENTION_BLOCKS = (4, 5, 6, 7, 8, 9, 10, 11)
PAPER_RESIDUAL_BLOCKS = (4,)

Device = Literal["auto", "cpu", "cuda", "mps"]
DType = Literal["fp32", "fp16", "bf16"]
ResizeMode = Literal["resize", "center-crop"]
Resample = Literal["lanczos", "bilinear", "bicubic"]
SourceStream = Literal["inversion", "reconstruction"]
StartLatent = Literal["inversion", "noise"]
InjectionMode = Literal["replace", "blend"]
# With a subject: where background queries' attention to subject keys comes from.
BackgroundAttention = Literal["own", "source"]
# With a subject: which injected features are limited to it (the others go everywhere).
MaskedFeatures = Literal["all", "residual", "attention"]
# With a subject: what masked injection gives the background.
BackgroundInjection = Literal["none", "centered"]
# With a subject: how the mask is reduced to a layer's grid (see PnPConfig.mask_cells).
MaskCells = Literal["auto", "area", "cover"]
# The subject-aware default: what the "auto" subject fields become when weaken.background is
# "auto" and the edit has a usable subject (``SubjectPolicy``), chosen in issue 11 on the toy
# model's development pairs (README, subject-aware section): the background removed before
# inversion, every layer cell the subject touches injected, the background at weight 0.2.
SUBJECT_BACKGROUND: BackgroundMode = "remove"
SUBJECT_MASK_CELLS: MaskCells = "cover"
SUBJECT_BACKGROUND_WEIGHT = 0.2
# With a subject: what the target prompts ask of the background (see PnPConfig.background_intent).
BackgroundIntent = Literal["auto", "follow", "keep"]
# How background intent "keep" keeps the background (see PnPConfig.keep_blend).
KeepBlend = Literal["pixels", "latents"]
# Words that open the background phrase of a prompt ("a red circle on grass", "a horse in a
# field"); ``background_phrase`` reads the phrase after the last of them.
BACKGROUND_PREPOSITIONS = frozenset(
    {"on", "in", "at", "against", "over", "under", "near", "by", "beside", "inside", "behind"}
)
_ARTICLES = frozenset({"a", "an", "the"})


# A feature budget for interactive front ends (the web app's default): one 512 px photo's
# source features take ~650 MiB in fp16 and ~1.3 GiB in fp32 (README), so this keeps 1-3.
INTERACTIVE_FEATURE_BYTES = 2 * 1024**3


class ConfigError(InputError):
    """A configuration value is out of range or of the wrong kind; the message names it."""


# The allowed range, (low, high) inclusive, of every open-ended numeric setting, written once:
# the config validators, the batch engine and the web app read these, and errors quote them.
# Fractions (pnp_f_t, blend_alpha, ...) are [0, 1] by their own check; mask sizes (grow,
# feather) are bounded by the mask's side.
LIMITS: dict[str, tuple[int | float, int | float]] = {
    "preprocess.size": (16, 4096),  # pixels; 4096 px SD latents already take ~20 GB
    "preprocess.max_input_pixels": (1, 1 << 31),  # decoded RGB under 6 GiB
    "inversion.steps": (1, 1000),  # the scheduler has 1000 training timesteps
    "pnp.steps": (1, 1000),
    "pnp.guidance": (0.0, 30.0),  # beyond ~30 CFG saturates to black/blown-out images
    "pnp.seed": (0, 2**63 - 1),  # what torch.Generator.manual_seed takes and JSON keeps exact
    "pnp.prompt_batch_size": (1, 64),
    "prompts": (1, 64),  # target prompts per edit: each is a row of every UNet batch
    "workers": (1, 256),  # engine workers (Ray actors)
}


def check_limit(name: str, value: float, cap: float | None = None, why: str = "") -> None:
    """Raise :class:`ConfigError` unless ``value`` lies in ``LIMITS[name]`` (the message names
    the setting and its range). ``cap``: a lower top a front end sets (e.g. a server without a
    GPU), said with ``why`` in the message."""
    low, high = LIMITS[name]
    if cap is not None and cap < high:
        high = cap
    else:
        why = ""
    if not low <= value <= high:
        raise ConfigError(f"{name} must be in [{low}, {high}]{why}; got {short_repr(value)}")


def check_limits(section: Any, where: str) -> None:
    """:func:`check_limit` for every field of config dataclass ``section`` that has a limit
    (None values mean "the default" and pass)."""
    for item in dataclasses.fields(section):
        name = f"{where}.{item.name}"
        value = getattr(section, item.name)
        if name in LIMITS and value is not None:
            check_limit(name, value)


def _check_choice(name: str, value: object, literal: Any) -> None:
    choices = get_args(literal)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")


def _check_fraction(name: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1]; got {value!r}")


def check_types(section: Any, where: str) -> None:
    """Raise :class:`ConfigError` naming the first field of a config dataclass whose value is
    not of its declared type. Strict: a bool is not a number (``steps: true`` is refused, not
    one step) and numbers must be finite (``guidance: .inf`` would make black images)."""
    hints = get_type_hints(type(section))
    for item in dataclasses.fields(section):
        value = getattr(section, item.name)
        if not _is_type(value, hints[item.name]):
            raise ConfigError(
                f"{where}.{item.name} must be {_describe(hints[item.name])}; "
                f"got {short_repr(value)} ({type(value).__name__})"
            )


def _is_type(value: Any, hint: Any) -> bool:
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin is Literal:
        return any(type(value) is type(a) and value == a for a in args)
    if origin in (types.UnionType, Union):
        return any(_is_type(value, a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:  # and encodable: prompts and words reach the tokenizer
        return isinstance(value, str) and _encodable(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if origin in (tuple, list):
        if not isinstance(value, tuple | list):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_is_type, value, args))
        return all(_is_type(v, args[0]) for v in value) if args else True
    return isinstance(value, origin or hint)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe(hint: Any) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (types.UnionType, Union):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"{len(args)} numbers" if float in args else f"a tuple of {len(args)}"
    if origin in (tuple, list):
        return f"a list of ({_describe(args[0])})" if args else "a list"
    names = {bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_CONFIG_BYTES = 1 << 20  # config files, manifests' YAML: far below this in practice


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML (or JSON) config text safely: no Python objects, no anchors/aliases.

    Aliases let a few lines expand into billions of nodes (the "billion laughs" file) or into
    a list that contains itself, which every later walk over the config would choke on; config
    files never need them. Text over ``MAX_CONFIG_BYTES`` is refused too.
    """
    import yaml

    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{where} is {len(text) / 2**20:.1f} MiB; configs over "
            f"{MAX_CONFIG_BYTES / 2**20:.0f} MiB are refused"
        )
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent | yaml.events.NodeEvent) and (
                isinstance(event, yaml.AliasEvent) or event.anchor is not None
            ):
                raise ConfigError(
                    f"{where} uses YAML anchors/aliases (&name / *name), which are refused: "
                    "write the values out"
                )
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML/JSON: {err}") from err


def background_phrase(prompt: str) -> tuple[str, ...] | None:
    """The words after the last preposition of ``BACKGROUND_PREPOSITIONS`` in ``prompt``,
    lower-cased, punctuation and articles dropped (``"A red circle on grass."`` ->
    ``("grass",)``); None when the prompt has no such phrase."""
    words = re.findall(r"[\w'-]+", prompt.lower())
    opens = [i for i, word in enumerate(words) if word in BACKGROUND_PREPOSITIONS]
    if not opens:
        return None
    phrase = tuple(w for w in words[opens[-1] + 1 :] if w not in _ARTICLES)
    return phrase or None


def keeps_background(source_prompt: str, target_prompt: str) -> bool:
    """Whether ``target_prompt`` keeps ``source_prompt``'s background: both have a background
    phrase (``background_phrase``) and they are the same words. ``"a red circle on grass"`` ->
    ``"a blue circle on grass"``: True; ``-> "a blue circle on snow"``: False."""
    source = background_phrase(source_prompt)
    return source is not None and source == background_phrase(target_prompt)


def prompt_list(prompts: object) -> list[str]:
    """``prompts`` (a string or a list/tuple of strings) as a non-empty list of strings.

    Anything else is refused by name before the text encoder sees it (a nested list once
    became one 343-token "prompt").
    """
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list | tuple):
        raise ConfigError(
            f"prompts must be a string or a list of strings; got {type(prompts).__name__} "
            f"{short_repr(prompts)}"
        )
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ConfigError(
            f"prompts must be strings; got {type(bad[0]).__name__} {short_repr(bad[0])} in "
            f"{short_repr(prompts)}"
        )
    if not prompts:
        raise ConfigError("prompts is empty: give at least one target prompt")
    check_limit("prompts", len(prompts))
    for prompt in prompts:
        check_text("prompt", prompt)
    return list(prompts)


def check_text(name: str, text: str) -> str:
    """``text`` unchanged, or :class:`ConfigError` if it cannot be UTF-8 encoded: a command-line
    argument with bytes that are not UTF-8 arrives as lone surrogates (``'\\udcff'``), which the
    tokenizer cannot take."""
    if not _encodable(text):
        raise ConfigError(
            f"{name} {short_repr(text)} is not valid text: it holds bytes that are not UTF-8 "
            "(lone surrogates)"
        )
    return text


@dataclass
class ModelConfig:
    """Which Stable Diffusion checkpoint to load and where to run it."""

    model: str = DEFAULT_MODEL_ID  # hub id, local diffusers folder, or single .safetensors file
    revision: str | None = None  # hub revision (branch, tag or commit); None = default branch
    device: Device = "auto"  # auto = cuda if available, else mps, else cpu
    dtype: DType = "fp32"  # fp16/bf16 halve memory on GPUs; fp32 is exact and CPU-friendly
    cpu_offload: bool = False  # accelerate model CPU offload: less VRAM, slower
    allow_pickle: bool = False  # permit .ckpt/.pt single files (unpickling can run code)
    single_file_config: str | None = None  # diffusers folder/id giving configs for a single file

    def validate(self) -> None:
        check_types(self, "model")
        if not self.model:
            raise ConfigError("model must name a hub id, a local folder or a checkpoint file")
        _check_choice("device", self.device, Device)
        _check_choice("dtype", self.dtype, DType)


@dataclass
class PreprocessConfig:
    """How an input photo becomes the model's input."""

    # short side (resize) or square side (center-crop), in pixels; None = the model's native
    # size (UNet sample_size x VAE factor: 512 for SD 1.5, 768 for SD 2.1)
    size: int | None = None
    resize_mode: ResizeMode = "resize"  # resize: aspect kept (the port); center-crop: the paper
    resample: Resample = "lanczos"  # PIL filter; the paper uses lanczos, the port bilinear
    max_input_pixels: int = 64_000_000  # refuse larger files before decoding them fully

    def validate(self) -> None:
        check_types(self, "preprocess")
        _check_choice("resize_mode", self.resize_mode, ResizeMode)
        _check_choice("resample", self.resample, Resample)
        check_limits(self, "preprocess")


@dataclass
class InversionConfig:
    """DDIM inversion of the source image (eta 0, no guidance)."""

    # inversion steps; None = the sampling steps (always a valid grid). Any count whose grid
    # contains the sampling grid works (a multiple of the sampling steps, or the port's 999).
    steps: int | None = None
    prompt: str = ""  # text the inversion is conditioned on; the port and paper use ""

    def validate(self) -> None:
        check_types(self, "inversion")
        if self.steps is not None and (
            not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1
        ):
            raise ConfigError(f"inversion steps must be an integer >= 1; got {self.steps!r}")
        check_limits(self, "inversion")

    def steps_for(self, sampling_steps: int) -> int:
        """The inversion steps to run: ``steps``, or the sampling steps when it is None."""
        return sampling_steps if self.steps is None else self.steps


@dataclass
class PnPConfig:
    """The PnP editing loop: guidance, thresholds, sites and injection modes.

    Thresholds are fractions of the sampling steps: residual features are injected during the
    first ``int(steps * pnp_f_t)`` steps and self-attention Q/K during the first
    ``int(steps * pnp_attn_t)`` steps (the diffusers port's rounding: 40 and 25 of 50).
    ``pnp_f_t`` and ``pnp_attn_t`` are the paper's tau_f and tau_A under the port's names (kept:
    they are config keys of every record). ``source`` picks the source stream, the batch row
    whose features are injected. "Scheme 1/2/3" are the three alternatives of the project
    report pnp-sam started from: start from noise (``start="noise"``), blend the features
    (``injection="blend"``), and weaken the background in pixels before inversion
    (``EditConfig.weaken``).
    """

    steps: int = 50  # DDIM sampling steps (eta 0)
    guidance: float = 7.5  # classifier-free guidance scale
    negative_prompt: str = PORT_NEGATIVE_PROMPT  # the port's default
    seed: int = 0  # seeds the start noise (start="noise"); inversion itself is deterministic
    pnp_f_t: float = 0.8  # fraction of steps with residual-feature injection
    pnp_attn_t: float = 0.5  # fraction of steps with self-attention Q/K injection
    source: SourceStream = "inversion"  # inversion: the port; reconstruction: the paper's code
    start: StartLatent = "inversion"  # inversion: PnP; noise: the report's scheme 1
    injection: InjectionMode = "replace"  # replace: PnP; blend: the report's scheme 2
    blend_alpha: float = 0.5  # blend weight of the source features (1.0 equals replace)
    residual_blocks: tuple[int, ...] = PAPER_RESIDUAL_BLOCKS  # LDM output blocks, residual
    attention_blocks: tuple[int, ...] = PAPER_ATTENTION_BLOCKS  # LDM output blocks, attn Q/K
    prompt_batch_size: int | None = None  # prompts per UNet batch; None = all at once
    # With a subject mask: inject only at subject positions (the mask resized to each layer's
    # grid, soft edges), so the background follows the text. Off = the report's scheme 3 alone.
    mask_injection: bool = True
    # With a subject mask: fraction of fresh noise in the background of the start latent
    # (variance-preserving), so the old background structure does not return through x_T.
    background_noise: float = 0.0
    # ... applied at this fraction of the steps (the latent x_t there) instead of at x_T, so the
    # first steps lay out the subject from the whole inverted latent before the background is
    # freed.
    background_noise_t: float = 0.0
    # With a subject and mask_injection: layers whose grid side is at most this fraction of the
    # latent side inject everywhere (the coarse layout is kept whole), finer layers only on the
    # subject. Resolution-aware: 0.25 = the 4x4 layers of the 16x16 toy latent, the 16x16 layers
    # of SD's 64x64 latent. 0 = subject-only at every layer.
    full_injection_scale: float = 0.0
    # With a subject and mask_injection: fraction of the steps (from the first) that inject
    # everywhere before injection narrows to the subject.
    full_injection_t: float = 0.0
    # With a subject and mask_injection, at injected self-attention layers: "own" = background
    # queries attend with their own query/key logits; "source" = the logits of every pair that
    # involves a subject token (background query -> subject key, subject query -> any key) are
    # the source stream's, so the background keeps the source's relation to the silhouette.
    background_attention: BackgroundAttention = "own"
    # With a subject and mask_injection: which features stop at the subject. "residual" keeps
    # the source's self-attention Q/K everywhere (layout by self-similarity, no colour: values
    # stay the generation's own) while residual features, which carry colour, stop at the
    # subject; "attention" the reverse.
    masked_features: MaskedFeatures = "all"
    # With a subject and mask_injection: "none" = background positions keep their own
    # features; "centered" = they get the source's features minus the source background's
    # per-channel mean plus the generation's own background mean: the source's spatial
    # structure (where the silhouette ends) without its mean appearance (the old colour).
    background_injection: BackgroundInjection = "none"
    # With a subject and mask_injection: how the subject mask becomes a layer's grid. "area" =
    # each cell weighted by the fraction of it the subject covers (soft edges); "cover" = every
    # cell the subject touches injects fully, so a coarse layer keeps the whole silhouette
    # (at an 8x8 layer most subject cells are edge cells). "auto" = SUBJECT_MASK_CELLS in the
    # subject-aware default (see ``SubjectPolicy``), else "area".
    mask_cells: MaskCells = "auto"
    # With a subject and mask_injection: injection weight at background positions (0 = none,
    # 1 = plain PnP everywhere). None = SUBJECT_BACKGROUND_WEIGHT in the subject-aware
    # default, else 0.
    background_weight: float | None = None
    # With a subject: words of the target prompts that name it (e.g. "robot", "yellow
    # circle"). Background positions get no cross-attention to their tokens, so the free
    # background does not draw a second subject. "" = off.
    subject_words: str = ""
    # With a subject: what the target prompts ask of the background. "follow" = it follows the
    # text (the subject-aware default, or what ``weaken`` sets: the behaviour before this
    # field existed); "keep" = it stays the source's: nothing is weakened before inversion and
    # after every sampling step the background latents are the source's inversion latents at
    # that step (blended latent diffusion) while the subject is PnP-injected; "auto" = "keep"
    # when ``source_prompt`` is given, ``weaken.background`` is auto or keep and every target
    # prompt keeps the source prompt's background phrase (``keeps_background``), else
    # "follow". An edit records the value it resolved to.
    background_intent: BackgroundIntent = "auto"
    # How "keep" keeps it. "pixels" = the edit runs as plain PnP (the subject-aware fields
    # resolve to injection everywhere: its background is replaced anyway) and the decoded
    # output takes the source photo's pixels outside the subject mask, grown and feathered by
    # 1/64 of the image side (``paste_background``); "latents" = after every sampling step the
    # background latents are the source's inversion latents at that step (blended latent
    # diffusion), the subject PnP-injected with the subject-aware fields. On the toy's
    # colour-only development pairs "latents" lost 0.12 colour to plain PnP (edge cells keep
    # part of the old colour) and "pixels" none (README, background intent).
    keep_blend: KeepBlend = "pixels"
    # Words describing the source image ("a red circle on grass"), read only by
    # ``background_intent`` auto; the inversion is conditioned on ``inversion.prompt``.
    source_prompt: str = ""

    def validate(self) -> None:
        check_types(self, "pnp")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an integer >= 1; got {self.steps!r}")
        if not isinstance(self.guidance, int | float) or math.isnan(self.guidance):
            raise ConfigError(f"guidance must be a number; got {self.guidance!r}")
        _check_fraction("pnp_f_t", self.pnp_f_t)
        _check_fraction("pnp_attn_t", self.pnp_attn_t)
        _check_fraction("blend_alpha", self.blend_alpha)
        _check_fraction("background_noise", self.background_noise)
        _check_fraction("background_noise_t", self.background_noise_t)
        _check_fraction("full_injection_scale", self.full_injection_scale)
        _check_fraction("full_injection_t", self.full_injection_t)
        _check_choice("background_attention", self.background_attention, BackgroundAttention)
        _check_choice("masked_features", self.masked_features, MaskedFeatures)
        _check_choice("background_injection", self.background_injection, BackgroundInjection)
        _check_choice("mask_cells", self.mask_cells, MaskCells)
        _check_choice("background_intent", self.background_intent, BackgroundIntent)
        _check_choice("keep_blend", self.keep_blend, KeepBlend)
        if self.background_weight is not None:
            _check_fraction("background_weight", self.background_weight)
        _check_choice("source", self.source, SourceStream)
        _check_choice("start", self.start, StartLatent)
        _check_choice("injection", self.injection, InjectionMode)
        if self.prompt_batch_size is not None and self.prompt_batch_size < 1:
            raise ConfigError(f"prompt_batch_size must be >= 1; got {self.prompt_batch_size!r}")
        for name in ("residual_blocks", "attention_blocks"):
            blocks = getattr(self, name)
            if any(not isinstance(b, int) or b < 0 for b in blocks):
                raise ConfigError(f"{name} must be LDM output block numbers >= 0; got {blocks!r}")
        check_limits(self, "pnp")

    def intent_for(self, prompts: Sequence[str], weakening: str) -> BackgroundIntent:
        """``background_intent`` made concrete ("follow" or "keep") for ``prompts`` when the
        source is inverted with background mode ``weakening`` (``weaken.background``).

        Raises ``ConfigError`` for "keep" with a weakened background (the kept background
        would be the removed/dimmed one)."""
        unweakened = weakening in ("auto", "keep")
        if self.background_intent == "keep" and not unweakened:
            raise ConfigError(
                f"pnp.background_intent 'keep' takes the background from the source's "
                f"inversion, which weaken.background {weakening!r} changes; use auto or keep"
            )
        if self.background_intent != "auto":
            return self.background_intent
        source = self.source_prompt
        kept = bool(source.strip()) and all(keeps_background(source, p) for p in prompts)
        return "keep" if kept and unweakened else "follow"

    @property
    def residual_steps(self) -> int:
        """Number of leading sampling steps with residual injection."""
        return int(self.steps * self.pnp_f_t)

    @property
    def attention_steps(self) -> int:
        """Number of leading sampling steps with self-attention injection."""
        return int(self.steps * self.pnp_attn_t)


@dataclass(frozen=True)
class SubjectPolicy:
    """The subject-aware default, decided in this one place: what the "auto" subject fields
    (``weaken.background``, ``pnp.mask_cells``, ``pnp.background_weight``) become for an edit.

    ``decide`` runs once per inversion, when it is known whether a usable subject was found;
    ``apply`` then fills those fields of any edit of that inversion. With the subject-aware
    default (``weaken.background`` "auto" and a subject) they become ``SUBJECT_BACKGROUND``,
    ``SUBJECT_MASK_CELLS`` and ``SUBJECT_BACKGROUND_WEIGHT``; otherwise "keep", "area" and 0.0,
    the behaviour before these fields existed, so older records re-run identically. Fields set
    by hand are kept as they are.
    """

    subject_aware: bool = False  # the subject-aware default is in force
    # background intent "keep": the background is taken from this inversion's trajectory, so
    # "auto" weakens nothing before inversion (the PnP subject fields are still the default's)
    keeps_background: bool = False

    @classmethod
    def decide(
        cls, background: BackgroundMode, has_subject: bool, intent: BackgroundIntent = "follow"
    ) -> SubjectPolicy:
        """The policy for an edit whose ``weaken.background`` is ``background``, which has
        (``has_subject``) or lacks a usable subject mask, and whose resolved
        ``pnp.background_intent`` is ``intent`` ("auto" counts as "follow")."""
        return cls(
            subject_aware=background == "auto" and has_subject,
            keeps_background=has_subject and intent == "keep",
        )

    def weaken(self, weaken: WeakenConfig) -> WeakenConfig:
        """A copy of ``weaken`` with ``background`` "auto" made concrete."""
        if weaken.background != "auto":
            return dataclasses.replace(weaken)
        removes = self.subject_aware and not self.keeps_background
        background: BackgroundMode = SUBJECT_BACKGROUND if removes else "keep"
        return dataclasses.replace(weaken, background=background)

    def pnp(self, pnp: PnPConfig) -> PnPConfig:
        """A copy of ``pnp`` with ``mask_cells`` "auto" and ``background_weight`` None made
        concrete."""
        cells = pnp.mask_cells
        if cells == "auto":
            cells = SUBJECT_MASK_CELLS if self.subject_aware else "area"
        weight = pnp.background_weight
        if weight is None:
            pasted = self.keeps_background and pnp.keep_blend == "pixels"
            # the source's background is pasted over the output's: plain PnP everywhere
            weight = 1.0 if pasted else SUBJECT_BACKGROUND_WEIGHT if self.subject_aware else 0.0
        return dataclasses.replace(pnp, mask_cells=cells, background_weight=weight)


@dataclass
class EditConfig:
    """Everything that determines an edit's output, apart from the image and the prompts."""

    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    pnp: PnPConfig = field(default_factory=PnPConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)  # the subject (none = plain PnP)
    weaken: WeakenConfig = field(default_factory=WeakenConfig)  # the report's scheme 3

    def resolve_derived(self) -> EditConfig:
        """This config with defaults that follow other fields filled in (the one place they are).

        ``inversion.steps`` None becomes ``pnp.steps``, so a record states the number that ran
        and re-runs identically even if the default changes.
        """
        self.inversion.steps = self.inversion.steps_for(self.pnp.steps)
        return self

    def validate(self) -> EditConfig:
        self.model.validate()
        self.preprocess.validate()
        self.inversion.validate()
        self.pnp.validate()
        check_types(self.mask, "mask")
        check_types(self.weaken, "weaken")
        try:
            self.mask.validate()
            self.weaken.validate()
        except ConfigError:
            raise
        except ValueError as err:
            raise ConfigError(str(err)) from err
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditConfig:
        """Build from nested dicts (a YAML/JSON file); unknown keys are errors that name them."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(
                f"unknown config section(s) {sorted(unknown)}; expected {sorted(sections)}"
            )
        kwargs = {}
        for name, value in data.items():
            section_type = type(getattr(cls(), name))
            kwargs[name] = section_from_dict(section_type, value or {}, name)
        return cls(**kwargs)


def section_from_dict(section_type: type, data: dict[str, Any], where: str) -> Any:
    """Instantiate one config dataclass from a dict, converting lists to tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where!r} must be a mapping; got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(section_type)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in config section {where!r}")
    return section_type(**{k: _frozen(v) for k, v in data.items()})


def _frozen(value: Any) -> Any:
    """JSON/YAML lists -> tuples (block lists, points, boxes), recursively."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # pnp-diffusers: source = inversion latents, 40/25 steps, its negative prompt, and its
    # 999-step inversion read at the 50-step grid.
    "pnp-diffusers": {
        "inversion": {"steps": 999, "prompt": ""},
        "pnp": {
            "steps": 50,
            "guidance": 7.5,
            "negative_prompt": PORT_NEGATIVE_PROMPT,
            "pnp_f_t": 0.8,
            "pnp_attn_t": 0.5,
            "source": "inversion",
            "start": "inversion",
            "injection": "replace",
        },
        "preprocess": {"resize_mode": "resize", "resample": "bilinear"},
    },
    # This project's default: the port's algorithm with an inversion on the sampling grid
    # (50 steps at the default 50 sampling steps: 20x cheaper than 999).
    "fast": {"inversion": {"steps": None}},
    # The paper's code: features from a DDIM reconstruction, center-crop preprocessing.
    "paper": {
        "inversion": {"steps": 999},
        "pnp": {"source": "reconstruction"},
        "preprocess": {"resize_mode": "center-crop", "resample": "lanczos"},
    },
}


def allowed_values(section: str, field_name: str) -> tuple[str, ...] | None:
    """The values a config field allows, from its ``Literal`` type; None for an open field.

    ``allowed_values("model", "dtype")`` -> ``("fp32", "fp16", "bf16")``. The option table and
    the validators read these, so each set of values is written once, in its ``Literal``.
    """
    sections = {f.name: f for f in dataclasses.fields(EditConfig)}
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}; expected {sorted(sections)}")
    section_type = type(getattr(EditConfig(), section))
    hints = get_type_hints(section_type)
    if field_name not in hints:
        raise ConfigError(f"unknown field {field_name!r} in config section {section!r}")
    hint = hints[field_name]
    return tuple(get_args(hint)) if get_origin(hint) is Literal else None


def merge_settings(config: EditConfig, settings: dict[str, Any], where: str) -> EditConfig:
    """A copy of ``config`` with ``settings`` (section -> field -> value) set; errors name
    ``where`` the settings came from."""
    data = config.to_dict()
    for section, values in settings.items():
        if section not in data:
            raise ConfigError(f"unknown config section {section!r} in {where}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} in {where} must be a mapping")
        data[section].update(values)
    try:
        return EditConfig.from_dict(data)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def apply_preset(config: EditConfig, preset: str) -> EditConfig:
    """Return a copy of ``config`` with a named preset's values set."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    return merge_settings(config, PRESETS[preset], f"preset {preset!r}")


def resolve_model_name(model: str) -> str:
    """A model alias (``toy``) -> its folder; any other name unchanged."""
    alias = MODEL_ALIASES.get(model)
    return str(alias) if alias is not None else model


def backbone_defaults(model: str) -> dict[str, Any]:
    """The PnP sites of the model's backbone, read from its own config (``Backbone.pnp_blocks``,
    e.g. SDXL's), or {} where they are the paper's, the backbone is unknown (a hub id not in
    the cache) or unsupported (the loader says so)."""
    from pnpsam.models.backbones import UnsupportedBackboneError, detect

    try:
        backbone = detect(resolve_model_name(model))
    except UnsupportedBackboneError:
        return {}
    if backbone is None:
        return {}
    residual, attention = backbone.pnp_blocks()
    if (residual, attention) == (PAPER_RESIDUAL_BLOCKS, PAPER_ATTENTION_BLOCKS):
        return {}
    return {"pnp": {"residual_blocks": list(residual), "attention_blocks": list(attention)}}


def model_defaults(model: str) -> dict[str, Any]:
    """The edit settings a model recommends: its backbone's PnP sites (``backbone_defaults``)
    under its folder's ``pnpsam_defaults.json`` (sections and fields as in ``EditConfig``);
    {} for an SD 1.x/2.x folder without one, a hub id or a single file."""
    data = backbone_defaults(model)
    file = Path(resolve_model_name(model)).expanduser() / MODEL_DEFAULTS_FILE
    if not file.is_file():
        return data
    try:
        given = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read the model's settings {str(file)!r}: {error}") from error
    if not isinstance(given, dict):
        raise ConfigError(f"{str(file)!r} must hold a mapping of config sections")
    merge_settings(EditConfig(), given, repr(str(file))).validate()  # bad values fail here
    for section, values in given.items():  # the file's values over the backbone's
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return data


def config_for_model(model: str) -> EditConfig:
    """The defaults for ``model``: ``EditConfig()`` under the model's recommended settings."""
    config = merge_settings(EditConfig(), model_defaults(model), f"{model!r}'s settings")
    config.model.model = model
    return config


def fingerprint(value: Any, length: int = 64, compact: bool = False) -> str:
    """Hex sha256 of JSON-able ``value`` (keys sorted, others as ``str``): the one fingerprint of
    what decides a result (an image's bytes digest, prompts, config, ...).

    Every resume and cache key is one: ``edit``'s output sets, ``batch``'s photos and
    ``bench``'s rows (``length=16``), the inversion store's keys (``compact``: JSON without
    spaces). ``length`` and ``compact`` only keep the digests written before valid.
    """
    separators = (",", ":") if compact else None
    text = json.dumps(value, sort_keys=True, default=str, separators=separators)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


MAX_STEPS_ENV = "PNPSAM_MAX_STEPS"
"""Environment variable: no command runs more than this many inversion or sampling steps (quick
looks, and the README's examples in the test suite); unset or empty = no cap."""


def capped_steps(steps: int) -> int:
    """``steps`` lowered to ``PNPSAM_MAX_STEPS`` when that is set."""
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if not raw:
        return steps
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{MAX_STEPS_ENV} must be a step count >= 1; got {raw!r}")
    return min(steps, int(raw))


def cap_steps(config: EditConfig) -> EditConfig:
    """``config`` with its sampling and inversion steps lowered to ``PNPSAM_MAX_STEPS``."""
    config.pnp.steps = capped_steps(config.pnp.steps)
    if config.inversion.steps is not None:
        config.inversion.steps = capped_steps(config.inversion.steps)
    return config
