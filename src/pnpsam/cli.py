"""Command line: ``pnpsam edit IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``.

Values come, in increasing priority, from the defaults, ``--preset``, ``--config FILE`` (YAML or
the JSON written beside every output) and the flags. Every output PNG gets a JSON record beside
it from which ``pnpsam edit --config RECORD.json`` reproduces it.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from pnpsam.api import PnPEditor, unet_evaluations
from pnpsam.bench.cli import add_bench_parser
from pnpsam.config import PRESETS, ConfigError, EditConfig, apply_preset
from pnpsam.demo import add_demo_parser
from pnpsam.imageio import ImageInputError, load_image, save_json, save_png
from pnpsam.injection import InjectionSiteError
from pnpsam.inversion import TimestepGridError
from pnpsam.masks import MaskCoverageError, overlay_mask
from pnpsam.models.loading import ModelLoadError
from pnpsam.pipeline import OutOfMemoryError

USER_ERRORS = (
    ConfigError,
    ImageInputError,
    ModelLoadError,
    InjectionSiteError,
    TimestepGridError,
    OutOfMemoryError,
    FileExistsError,
    MaskCoverageError,
    ValueError,
)


def _blocks(text: str) -> tuple[int, ...]:
    """'4' or '4,5,6' or '4-11' -> tuple of LDM output block numbers."""
    blocks: list[int] = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
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
    """One CLI flag that sets one config field."""

    flag: str
    section: str
    field: str
    help: str
    type: Callable[[str], Any] | None = None
    choices: Sequence[str] | None = None
    switch: bool = False  # a store_true flag (or --no-... when the default is True)
    repeat: bool = False  # may be given several times; collects a list


OPTIONS = (
    Option("--model", "model", "model", "hub id, local diffusers folder or .safetensors file"),
    Option("--revision", "model", "revision", "hub revision (branch, tag or commit)"),
    Option("--device", "model", "device", "where to run", choices=("auto", "cpu", "cuda", "mps")),
    Option("--dtype", "model", "dtype", "weights/activations", choices=("fp32", "fp16", "bf16")),
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
        choices=("resize", "center-crop"),
    ),
    Option(
        "--resample",
        "preprocess",
        "resample",
        "resize filter (the port: bilinear)",
        choices=("lanczos", "bilinear", "bicubic"),
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
        choices=("inversion", "reconstruction"),
    ),
    Option(
        "--start",
        "pnp",
        "start",
        "start latent: inverted x_T (PnP) or seeded noise (scheme 1)",
        choices=("inversion", "noise"),
    ),
    Option(
        "--injection",
        "pnp",
        "injection",
        "replace (PnP) or blend (scheme 2) the features",
        choices=("replace", "blend"),
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
        "scheme 3: keep, remove (fill 0) or dim the background before inversion",
        choices=("keep", "remove", "dim"),
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
        choices=("none", "global", "masked", "luminance"),
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
)


def _describe_default(option: Option) -> str:
    value = getattr(getattr(EditConfig(), option.section), option.field)
    if option.field == "size" and value is None:
        return "model's native size, 512 for SD 1.5"
    return repr(value)


def add_edit_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "edit",
        help="translate an image by one or more text prompts (PnP)",
        description="Translate IMAGE by each --prompt with Plug-and-Play diffusion features. "
        "Writes IMAGE-STEM_NN_PROMPT.png per prompt and IMAGE-STEM.json (the resolved "
        "configuration, versions and timings; `pnpsam edit --config` of it reproduces the run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("image", nargs="?", help="input image (any PIL-readable file)")
    parser.add_argument(
        "--prompt", action="append", default=None, help="target prompt; repeat for several"
    )
    parser.add_argument("--out", default="out", help="output folder")
    parser.add_argument("--config", help="YAML/JSON config (or a JSON record of an earlier run)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named settings, see README")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace existing outputs of the same name"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    for option in OPTIONS:
        help_text = f"{option.help} (default: {_describe_default(option)})"
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
    parser.set_defaults(run=run_edit)
    return parser


def read_config_file(path: str) -> dict[str, Any]:
    """Parse a YAML/JSON config file into a mapping; errors name the file."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path!r} is not valid YAML/JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r} must hold a mapping at the top level")
    return data


RUN_KEYS = ("image", "prompts")  # top-level keys of a config file that are not sections


def resolve_run(args: argparse.Namespace) -> tuple[EditConfig, str, list[str]]:
    """Merge defaults, preset, config file and flags; returns (config, image, prompts)."""
    cfg = EditConfig()
    if args.preset:
        cfg = apply_preset(cfg, args.preset)
    image, prompts = args.image, args.prompt
    if args.config:
        data = read_config_file(args.config)
        # A run record nests the sections under "config"; a hand-written file has them on top.
        sections = data.get("config") or {k: v for k, v in data.items() if k not in RUN_KEYS}
        merged = cfg.to_dict()
        for name, values in sections.items():
            if name not in merged:
                raise ConfigError(f"unknown config section {name!r} in {args.config!r}")
            if not isinstance(values, dict):
                raise ConfigError(f"config section {name!r} in {args.config!r} must be a mapping")
            merged[name].update(values)
        cfg = EditConfig.from_dict(merged)
        image = image or data.get("image")
        prompts = prompts or data.get("prompts")
    merged = cfg.to_dict()
    for option in OPTIONS:
        value = getattr(args, option.flag[2:].replace("-", "_"))
        if value is not None:
            merged[option.section][option.field] = value
    cfg = EditConfig.from_dict(merged).validate()
    if not image:
        raise ConfigError("no input image: give IMAGE or a --config that names one")
    if not prompts:
        raise ConfigError("no target prompt: give at least one --prompt")
    if any(not str(p).strip() for p in prompts):
        raise ConfigError(f"empty target prompt in {prompts!r}")
    return cfg, str(image), [str(p) for p in prompts]


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


@dataclass(frozen=True)
class OutputPaths:
    """Where one edit's files go: a PNG per prompt, the subject mask and overlay, the record."""

    pngs: list[Path]
    mask: Path
    overlay: Path
    record: Path

    @classmethod
    def of(cls, out: Path, image: str, prompts: Sequence[str]) -> OutputPaths:
        stem = Path(image).stem
        pngs = [out / f"{stem}_{i:02d}_{_slug(p)}.png" for i, p in enumerate(prompts)]
        return cls(
            pngs, out / f"{stem}_mask.png", out / f"{stem}_mask_overlay.png", out / f"{stem}.json"
        )

    def all(self) -> list[Path]:
        return [*self.pngs, self.mask, self.overlay, self.record]


def versions() -> dict[str, str]:
    found = {}
    for package in ("pnpsam", "torch", "diffusers", "transformers", "accelerate"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def model_record(editor: PnPEditor) -> dict[str, Any]:
    """Which weights were used: the given id, the resolved path and, for hub ids, the commit."""
    resolved = str(editor.pipeline.sd.config.get("_name_or_path", editor.model.model))
    commit = re.search(r"/snapshots/([0-9a-f]{40})", resolved)
    return {
        "id": editor.model.model,
        "revision": editor.model.revision,
        "resolved_path": resolved,
        "commit": commit.group(1) if commit else None,
    }


def run_edit(args: argparse.Namespace) -> int:
    cfg, image, prompts = resolve_run(args)
    out = Path(args.out)
    paths = OutputPaths.of(out, image, prompts)
    existing = [p for p in paths.all() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{existing[0]} exists; pass --overwrite or choose another --out (nothing was run)"
        )
    picture = load_image(image, cfg.preprocess.max_input_pixels)  # fail before loading a model
    started = time.perf_counter()
    editor = PnPEditor.from_pretrained(cfg.model)
    if args.quiet:
        editor.pipeline.sd.set_progress_bar_config(disable=True)
    loaded = time.perf_counter()
    result = editor.edit(picture, prompts, cfg)
    written = []
    for png, edited in zip(paths.pngs, result.images, strict=True):
        save_png(edited, png)
        written.append(png)
    subject = result.subject
    if subject is not None:
        save_png(Image.fromarray((subject.mask * 255).round().astype(np.uint8)), paths.mask)
        overlay = overlay_mask(np.asarray(result.source), subject.mask)
        save_png(Image.fromarray(overlay), paths.overlay)
        written += [paths.mask, paths.overlay]
    record = {
        "pnpsam": versions()["pnpsam"],
        "image": str(Path(image).resolve()),
        "image_sha256": result.image_sha256,
        "prompts": prompts,
        "outputs": [p.name for p in paths.pngs],
        "subject_mask": subject.provenance() if subject is not None else None,
        "config": result.config.to_dict(),
        "model": model_record(editor),
        "device": str(editor.pipeline.device),
        "versions": versions(),
        "timings": {"load_s": loaded - started, **result.timings},
        "unet_evaluations": unet_evaluations(
            result.config.pnp,
            editor.pipeline.inversion_calls(result.config.inversion.steps, result.config.pnp.steps),
            len(prompts),
        ),
    }
    save_json(record, paths.record)
    for path in [*written, paths.record]:
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnpsam",
        description="Text-driven image-to-image translation with Plug-and-Play diffusion "
        "features (CVPR 2023) on Stable Diffusion, made subject-aware with Segment Anything.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_edit_parser(subparsers)
    add_demo_parser(subparsers)
    add_bench_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except USER_ERRORS as err:
        print(f"pnpsam {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
