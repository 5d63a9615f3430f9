"""``pnpsam edit IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``.

Values come, in increasing priority, from the defaults, ``--preset``, ``--config FILE`` (YAML or
the JSON written beside every output) and the flags. Every output PNG gets a JSON record beside
it from which ``pnpsam edit --config RECORD.json`` reproduces it.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pnpsam.cli.options import OPTIONS, HelpFormatter, add_options, resolve_config
from pnpsam.config import PRESETS, ConfigError, EditConfig


def add_edit_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "edit",
        help="translate an image by one or more text prompts (PnP)",
        description="Translate IMAGE by each --prompt with Plug-and-Play diffusion features. "
        "Writes IMAGE-STEM_NN_PROMPT.png per prompt and IMAGE-STEM.json (the resolved "
        "configuration, versions and timings; `pnpsam edit --config` of it reproduces the run).",
        formatter_class=HelpFormatter,
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
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="keep inverted latents in DIR (safetensors): a later edit of the same photo with "
        "the same model and inversion settings skips the inversion (default: no cache)",
    )
    add_options(parser, OPTIONS)
    parser.set_defaults(run=run_edit)
    return parser


def resolve_run(args: argparse.Namespace) -> tuple[EditConfig, str, list[str]]:
    """Merge defaults, preset, config file and flags; returns (config, image, prompts)."""
    cfg, data = resolve_config(args, OPTIONS)
    image = args.image or data.get("image")
    prompts = args.prompt or data.get("prompts")
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


def run_edit(args: argparse.Namespace) -> int:
    # imported here, not at the top: they load torch, and `pnpsam --help` should not wait
    import numpy as np
    from PIL import Image

    from pnpsam.api import PnPEditor
    from pnpsam.imageio import load_image, save_json, save_png
    from pnpsam.masks import overlay_mask
    from pnpsam.masks.select import check_mask_models

    cfg, image, prompts = resolve_run(args)
    out = Path(args.out)
    paths = OutputPaths.of(out, image, prompts)
    existing = [p for p in paths.all() if p.exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{existing[0]} exists; pass --overwrite or choose another --out (nothing was run)"
        )
    picture = load_image(image, cfg.preprocess.max_input_pixels)  # fail before loading a model
    cfg.mask.validate(picture.height, picture.width)  # clicks outside the image, by name
    check_mask_models(cfg.mask)  # offline: a text model or SAM with no fallback fails now
    started = time.perf_counter()
    editor = PnPEditor.from_pretrained(cfg.model, cache_dir=args.cache)
    # bars on stderr also when it is not a terminal (a log), unless --quiet
    editor.set_progress_bar_config(disable=args.quiet)
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
    record = result.record(
        image, [p.name for p in paths.pngs], timings={"load_s": loaded - started}
    )
    save_json(record, paths.record)
    for path in [*written, paths.record]:
        print(path)
    return 0
