"""The edit settings as options and config files, shared by every subcommand and the web app.

Values come, in increasing priority, from the defaults, a preset, a config file (YAML, or the
JSON record written beside every output) and the flags.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pnpsam.config import (
    ConfigError,
    EditConfig,
    allowed_values,
    apply_preset,
    cap_steps,
    config_for_model,
    load_yaml,
    merge_settings,
)
from pnpsam.toyworld.world import TOY_VOCABULARY  # NumPy only


def _blocks(text: str) -> tuple[int, ...]:
    """'4' or '4,5,6' or '4-11' -> tuple of LDM output block numbers."""
    blocks: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                if int(lo) > int(hi):  # range() would be empty: no injection at all
                    raise argparse.ArgumentTypeError(
                        f"block range {part!r} runs backwards; write it low-high ({hi}-{lo})"
                    )
                blocks.extend(range(int(lo), int(hi) + 1))
            else:
                blocks.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected block numbers like 4 or 4,5 or 4-11; got {text!r}"
        ) from None
    return tuple(blocks)


def _numbers(count: int, what: str) -> Callable[[str], tuple[float, ...]]:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"expected {what}; got {text!r}")
        return values

    return parse


_point = _numbers(2, "a point x,y in image pixels")
_box = _numbers(4, "a box x0,y0,x1,y1 in image pixels")


@dataclass(frozen=True)
class Option:
    """One CLI flag that sets one config field (its allowed values come from the config)."""

    flag: str
    section: str
    field: str
    help: str
    type: Callable[[str], Any] = str
    switch: bool = False  # a store_true flag (or --no-... when the default is True)
    repeat: bool = False  # may be given several times; collects a list

    @property
    def choices(self) -> Sequence[str] | None:
        """The field's allowed values (its ``Literal`` in the config), or None for any value."""
        return allowed_values(self.section, self.field)


OPTIONS = (
    Option(
        "--model",
        "model",
        "model",
        "hub id, local diffusers folder or .safetensors file, or 'toy': the shipped toy-world "
        f"model, offline ({TOY_VOCABULARY})",
    ),
    Option("--revision", "model", "revision", "hub revision (branch, tag or commit)"),
    Option("--device", "model", "device", "where to run"),
    Option("--dtype", "model", "dtype", "weights/activations"),
    Option("--cpu-offload", "model", "cpu_offload", "offload idle models to CPU", switch=True),
    Option("--allow-pickle", "model", "allow_pickle", "allow pickled .ckpt files", switch=True),
    Option(
        "--single-file-config",
        "model",
        "single_file_config",
        "diffusers folder or hub id whose configs describe a single-file checkpoint",
    ),
    Option("--size", "preprocess", "size", "short side (or square side) in px", type=int),
    Option(
        "--resize-mode",
        "preprocess",
        "resize_mode",
        "resize: keep aspect (port); center-crop: square (paper)",
    ),
    Option(
        "--resample",
        "preprocess",
        "resample",
        "resize filter (the port: bilinear)",
    ),
    Option("--inversion-steps", "inversion", "steps", "DDIM inversion steps", type=int),
    Option("--inversion-prompt", "inversion", "prompt", "text the inversion is conditioned on"),
    Option("--steps", "pnp", "steps", "DDIM sampling steps", type=int),
    Option("--guidance", "pnp", "guidance", "classifier-free guidance scale", type=float),
    Option("--negative-prompt", "pnp", "negative_prompt", "negative prompt"),
    Option("--seed", "pnp", "seed", "seed of the start noise (--start noise)", type=int),
    Option("--pnp-f-t", "pnp", "pnp_f_t", "fraction of steps with residual injection", type=float),
    Option(
        "--pnp-attn-t",
        "pnp",
        "pnp_attn_t",
        "fraction of steps with attention Q/K injection",
        type=float,
    ),
    Option(
        "--source",
        "pnp",
        "source",
        "source stream: inversion latents (port) or DDIM reconstruction (paper)",
    ),
    Option(
        "--start",
        "pnp",
        "start",
        "start latent: inverted x_T (PnP) or seeded noise (scheme 1)",
    ),
    Option(
        "--injection",
        "pnp",
        "injection",
        "replace (PnP) or blend (scheme 2) the features",
    ),
    Option("--blend-alpha", "pnp", "blend_alpha", "source weight in blend mode", type=float),
    Option(
        "--residual-blocks",
        "pnp",
        "residual_blocks",
        "LDM output blocks with residual injection (e.g. 4 or 4,7)",
        type=_blocks,
    ),
    Option(
        "--attention-blocks",
        "pnp",
        "attention_blocks",
        "LDM output blocks with self-attention Q/K injection (e.g. 4-11)",
        type=_blocks,
    ),
    Option(
        "--prompt-batch-size",
        "pnp",
        "prompt_batch_size",
        "prompts per UNet batch (default: all)",
        type=int,
    ),
    # -- the subject (issue: subject-aware translation) --------------------------------------
    Option("--point", "mask", "points", "click x,y on the subject (repeat)", _point, repeat=True),
    Option(
        "--neg-point", "mask", "neg_points", "click x,y NOT on the subject", _point, repeat=True
    ),
    Option("--box", "mask", "box", "box x0,y0,x1,y1 around the subject", _box),
    Option("--subject", "mask", "subject", "text naming the subject (no clicks needed)"),
    Option("--mask", "mask", "mask_file", "subject mask image (white = subject), any size"),
    Option("--sam-model", "mask", "sam_model", "SAM / SAM-2 hub id or folder"),
    Option(
        "--text-model",
        "mask",
        "text_model",
        "CLIPSeg or Grounding DINO hub id or folder for --subject",
    ),
    Option(
        "--mask-index", "mask", "multimask_index", "SAM candidate (default: best IoU)", type=int
    ),
    Option("--mask-grow", "mask", "grow_px", "grow (>0) or shrink (<0) the mask, px", type=int),
    Option("--mask-feather", "mask", "feather_px", "soft mask edge, px", type=float),
    Option("--mask-fill-holes", "mask", "fill_holes", "fill holes in the mask", switch=True),
    Option("--mask-invert", "mask", "invert", "treat the background as the subject", switch=True),
    Option(
        "--no-grabcut-fallback",
        "mask",
        "grabcut_fallback",
        "fail when SAM cannot be loaded instead of falling back (GrabCut for clicks, "
        "CLIPSeg's coarse map for text)",
        switch=True,
    ),
    Option(
        "--background",
        "weaken",
        "background",
        "before inversion: auto (the default) removes the background when a subject is given "
        "(--point/--box/--subject/--mask: the subject-aware default) and keeps it otherwise; "
        "the report's scheme 3: keep, remove (fill 0), dim, mean (fill its mean colour) or "
        "blur",
    ),
    Option(
        "--dim-factor",
        "weaken",
        "dim_factor",
        "background multiplier for --background dim",
        type=float,
    ),
    Option(
        "--restore",
        "weaken",
        "restore",
        "after decoding: none, global (the report: x 1/factor), masked, luminance",
    ),
    Option(
        "--no-mask-injection",
        "pnp",
        "mask_injection",
        "with a subject, inject everywhere (plain PnP sites) instead of only on it",
        switch=True,
    ),
    Option(
        "--background-noise",
        "pnp",
        "background_noise",
        "fresh-noise fraction in the background of the start latent (with a subject)",
        type=float,
    ),
    Option(
        "--background-noise-t",
        "pnp",
        "background_noise_t",
        "re-noise the background at this fraction of the steps instead of at x_T",
        type=float,
    ),
    Option(
        "--full-injection-scale",
        "pnp",
        "full_injection_scale",
        "with a subject: layers whose side is at most this fraction of the latent's inject "
        "everywhere, finer ones only on the subject",
        type=float,
    ),
    Option(
        "--full-injection-t",
        "pnp",
        "full_injection_t",
        "with a subject: fraction of the first steps that inject everywhere",
        type=float,
    ),
    Option(
        "--background-attention",
        "pnp",
        "background_attention",
        "with a subject: own = background queries use their own logits; source = logits "
        "involving subject tokens are the source's",
    ),
    Option(
        "--masked-features",
        "pnp",
        "masked_features",
        "with a subject: which injected features stop at the subject (all, residual, attention)",
    ),
    Option(
        "--background-injection",
        "pnp",
        "background_injection",
        "with a subject: none = the background keeps its own features; centered = the source's "
        "structure without its mean appearance",
    ),
    Option(
        "--mask-cells",
        "pnp",
        "mask_cells",
        "with a subject: how the mask meets coarse layers: area = share of each cell, cover = "
        "any cell it touches; auto = cover in the subject-aware default, else area",
    ),
    Option(
        "--background-weight",
        "pnp",
        "background_weight",
        "with a subject: injection weight in the background, 0-1 (default: 0.2 in the "
        "subject-aware default, else 0)",
        type=float,
    ),
    Option(
        "--subject-words",
        "pnp",
        "subject_words",
        "with a subject: words of the prompts that name it (e.g. 'robot'); the background does "
        "not attend to them, so it does not draw a second subject",
    ),
    Option(
        "--background-intent",
        "pnp",
        "background_intent",
        "with a subject: follow = the background follows the prompt; keep = it stays the "
        "photo's (see --keep-blend); auto = keep when --source-prompt is given and every "
        "prompt keeps its background words ('... on grass' -> '... on grass'), else follow",
    ),
    Option(
        "--keep-blend",
        "pnp",
        "keep_blend",
        "how --background-intent keep keeps it: pixels = plain PnP, then the photo's pixels "
        "pasted back outside the subject (edge grown and feathered); latents = the photo's "
        "inversion latents outside the subject at every step (blended latent diffusion)",
    ),
    Option(
        "--source-prompt",
        "pnp",
        "source_prompt",
        "words describing the photo (e.g. 'a red circle on grass'); read by "
        "--background-intent auto only",
    ),
)


# Fields whose best value depends on the UNet: a model folder's pnpsam_defaults.json may set them.
MODEL_DEPENDENT = {
    ("pnp", "guidance"),
    ("pnp", "negative_prompt"),
    ("pnp", "residual_blocks"),
    ("pnp", "attention_blocks"),
}


def _describe_default(option: Option) -> str:
    """The help's ' (default: ...)' suffix, or '' when there is nothing to say (None, [])."""
    value = getattr(getattr(EditConfig(), option.section), option.field)
    if option.field == "size" and value is None:
        return " (default: the model's native size, 512 for SD 1.5)"
    if (option.section, option.field) == ("inversion", "steps") and value is None:
        return " (default: the sampling --steps)"
    if option.switch or "(default" in option.help or value in (None, [], ()):
        # a flag is off unless given: "(default: True)" after --no-X would read backwards
        return ""
    if (option.section, option.field) in MODEL_DEPENDENT:
        return f" (default: {value!r}, or the model's own)"
    return f" (default: {value!r})"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Prints a default once: not after a help that states it, nor None/False ("not given")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "(default" in text or action.default in (None, False):
            return text
        return super()._get_help_string(action)


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add each option as a flag whose default None means "not given".

    The parser remembers them (``args.option_table``) so that errors can name flags.
    """
    options = tuple(options)
    parser.set_defaults(option_table=options)
    for option in options:
        help_text = option.help + _describe_default(option)
        if option.switch:
            # a --no-X flag stores False into a field whose default is True
            value = not option.flag.startswith("--no-")
            parser.add_argument(
                option.flag, action="store_const", const=value, default=None, help=help_text
            )
        elif option.repeat:
            parser.add_argument(
                option.flag, type=option.type, action="append", default=None, help=help_text
            )
        else:
            parser.add_argument(
                option.flag,
                type=option.type,
                choices=option.choices,
                default=None,
                help=help_text,
            )


_FIELD_PATH = re.compile(r"\b([a-z]+\.[a-z_]+)\b")


def with_flags(message: str, options: Iterable[Option]) -> str:
    """``message`` with each config field it names (``model.dtype``) replaced by its flag.

    The library's errors speak of config fields; on the command line the flag is the handle.
    ``--no-...`` switches are left as field names (the flag would read as the opposite).
    """
    flags = {f"{o.section}.{o.field}": o.flag for o in options if not o.flag.startswith("--no-")}
    return _FIELD_PATH.sub(lambda match: flags.get(match[1], match[1]), message)


# "-5,-5" or "-3.5" after a flag that takes a value (argparse would read it as an option)
_NEGATIVE_VALUE = re.compile(r"^-\.?\d[\d.eE+-]*(,\s*-?\.?\d[\d.eE+-]*)*$")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``["--point", "-5,-5"]`` -> ``["--point=-5,-5"]`` for every flag of ``OPTIONS`` that
    takes a value, so a click or box left of / above the image is parsed as a value (and then
    refused by name as outside the image) instead of as an unknown option."""
    takes_value = {option.flag for option in OPTIONS if not option.switch}
    joined: list[str] = []
    index = 0
    while index < len(argv):
        token = argv[index]
        following = argv[index + 1] if index + 1 < len(argv) else ""
        if token in takes_value and _NEGATIVE_VALUE.match(following):
            joined.append(f"{token}={following}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def read_config_file(path: str) -> dict[str, Any]:
    """Parse a YAML/JSON config file into a mapping; errors name the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path!r} cannot be read as text: {err}") from err
    data = load_yaml(text, f"config file {path!r}")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    return data


RUN_KEYS = ("image", "prompts")  # top-level keys of a config file that are not sections


def resolve_config(
    args: argparse.Namespace, options: Iterable[Option]
) -> tuple[EditConfig, dict[str, Any]]:
    """Merge, in increasing priority: defaults, the model's recommended settings (its folder's
    ``pnpsam_defaults.json``), ``args.preset``, ``args.config`` and the given options' flags.

    Returns the validated config and the config file's raw mapping ({} without a file), whose
    ``image`` and ``prompts`` a caller may use.
    """
    data: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    if args.config:
        data = read_config_file(args.config)
        # A run record nests the sections under "config"; a hand-written file has them on top.
        sections = data.get("config") or {k: v for k, v in data.items() if k not in RUN_KEYS}
    given = {option: getattr(args, option.flag[2:].replace("-", "_")) for option in options}
    flags = [(option, value) for option, value in given.items() if value is not None]
    model = EditConfig().model.model
    if isinstance(sections.get("model"), dict):
        model = sections["model"].get("model", model)
    model = next((value for option, value in flags if option.flag == "--model"), model)
    cfg = config_for_model(str(model))
    if args.preset:
        cfg = apply_preset(cfg, args.preset)
    cfg = merge_settings(cfg, sections, repr(args.config))
    merged = cfg.to_dict()
    for option, value in flags:
        merged[option.section][option.field] = value
    return cap_steps(EditConfig.from_dict(merged)).validate(), data
