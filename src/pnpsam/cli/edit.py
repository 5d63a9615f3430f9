"""``pnpsam edit IMAGE --prompt TEXT [--prompt TEXT ...] --out DIR``.

Values come, in increasing priority, from the defaults, ``--preset``, ``--config FILE`` (YAML or
the JSON written beside every output) and the flags. Every output PNG gets a JSON record beside
it from which ``pnpsam edit --config RECORD.json`` reproduces it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pnpsam.config import PRESETS, ConfigError, EditConfig, fingerprint, prompt_list, short_repr
from pnpsam.options import OPTIONS, HelpFormatter, add_options, resolve_config

if TYPE_CHECKING:
    from PIL import Image

    from pnpsam.outputs import OutputPaths, OutputSet


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


def resolve_run(
    args: argparse.Namespace,
) -> tuple[EditConfig, str, list[str], dict[str, Any]]:
    """Merge defaults, preset, config file and flags; returns (config, image, prompts, the
    config file's mapping: {} without one)."""
    cfg, data = resolve_config(args, OPTIONS)
    image = args.image or data.get("image")
    prompts = args.prompt or data.get("prompts")
    if not image:
        raise ConfigError("no input image: give IMAGE or a --config that names one")
    if not isinstance(image, str):
        raise ConfigError(f"image in the config file must be a path; got {short_repr(image)}")
    if not prompts:
        raise ConfigError("no target prompt: give at least one --prompt")
    prompts = prompt_list(prompts)  # a config file's nested lists are refused by name
    if any(not p.strip() for p in prompts):
        raise ConfigError(f"empty target prompt in {prompts!r}")
    return cfg, image, prompts, data


def run_edit(args: argparse.Namespace) -> int:
    # imported here, not at the top: they load torch, and `pnpsam --help` should not wait
    from pnpsam.imageio import load_image
    from pnpsam.masks.select import check_mask_models
    from pnpsam.outputs import OutputFolder, OutputPaths, file_sha256

    cfg, image, prompts, data = resolve_run(args)
    _note_thread_change(data)
    out = Path(args.out)
    paths = OutputPaths.of(out, image, prompts)
    picture = load_image(image, cfg.preprocess.max_input_pixels)  # fail before loading a model
    mask_file = cfg.mask.mask_file
    if mask_file and not Path(mask_file).is_file():
        raise ConfigError(f"mask file {mask_file!r} does not exist or is not a file")
    cfg.mask.validate(picture.height, picture.width)  # clicks outside the image, by name
    if cfg.weaken.background not in ("keep", "auto") and not cfg.mask.has_source:
        raise ConfigError(
            f"background={cfg.weaken.background!r} needs a subject: give --point, --box, "
            "--subject or --mask"
        )
    if cfg.pnp.background_intent == "keep" and not cfg.mask.has_source:
        raise ConfigError(
            "--background-intent keep keeps the background around a subject: give --point, "
            "--box, --subject or --mask"
        )
    check_mask_models(cfg.mask)  # offline: a text model or SAM with no fallback fails now
    settings = fingerprint([file_sha256(image), prompts, cfg.to_dict()])
    side = cfg.preprocess.size or 512
    need = (len(prompts) + 2) * 4 * side * side * 3  # uncompressed, aspect up to 4:1
    with OutputFolder(out, "pnpsam edit", need) as folder:
        pngs = [p.name for p in paths.pngs]
        masks = [paths.mask.name, paths.overlay.name] if cfg.mask.has_source else []
        outputs = folder.output_set(
            paths.record.name,
            pngs + masks,
            settings,
            overwrite=args.overwrite,
            required=pngs,
            family=paths.family,
        )
        if outputs.complete:
            print(f"{paths.record}: finished earlier with the same settings; nothing to do")
            return 0
        if outputs.kept:
            print(f"resuming {paths.record}: keeping {', '.join(outputs.kept)}", file=sys.stderr)
        todo = [i for i, name in enumerate(pngs) if name in outputs.todo]
        if todo or outputs.draft is None or any(m in outputs.todo for m in masks):
            _compute(args, cfg, picture, image, prompts, todo, paths, outputs)
        record = outputs.finish()
    for name in outputs.done:
        print(out / name)
    print(record)
    return 0


def _note_thread_change(record: dict[str, Any]) -> None:
    """Say so when ``record`` (the ``--config`` file's mapping) is replayed at another torch
    thread count (pixels may differ in the last bits on a CPU)."""
    import torch

    from pnpsam.threads import replay_thread_note

    if not str(record.get("device", "")).startswith("cpu"):
        return  # a GPU's kernels do not depend on torch's CPU thread count
    note = replay_thread_note(record.get("torch_threads"), torch.get_num_threads())
    if note:
        print(f"pnpsam edit: {note}", file=sys.stderr)


def _compute(
    args: argparse.Namespace,
    cfg: EditConfig,
    picture: Image.Image,
    image: str,
    prompts: list[str],
    todo: list[int],
    paths: OutputPaths,
    outputs: OutputSet,
) -> None:
    """Edit for the prompts still to write, then write the mask files and the PNGs.

    The record body goes into the journal first, so a run killed after this point resumes
    without editing again what it already wrote.
    """
    from pnpsam.api import PnPEditor
    from pnpsam.outputs import edit_files

    started = time.perf_counter()
    editor = PnPEditor.from_pretrained(cfg.model, cache_dir=args.cache)
    # bars on stderr also when it is not a terminal (a log), unless --quiet
    editor.set_progress_bar_config(disable=args.quiet)
    loaded = time.perf_counter()
    if todo or outputs.draft is None:
        # with every PNG kept but no record body, one prompt is edited only for the record
        chosen = todo or [0]
        result = editor.edit(picture, [prompts[i] for i in chosen], cfg)
        body = result.record(
            image, [p.name for p in paths.pngs], timings={"load_s": loaded - started}
        )
        body["prompts"] = list(prompts)
        body["kept_from_earlier_run"] = list(outputs.kept)
        outputs.save_draft(body)
        subject, source = result.subject, result.source
    else:
        resolved = editor.resolve(cfg)
        subject = editor.subject_mask(picture, resolved)
        source = editor.prepare(picture, resolved.preprocess)
        result = None
    edited = {} if result is None else dict(zip(todo, result.images[: len(todo)], strict=True))
    files = edit_files(paths, edited, source, None if subject is None else subject.mask)
    # the mask files first, then the edits (the order the record's ``files`` lists them in)
    for name in [paths.mask.name, paths.overlay.name, *(p.name for p in paths.pngs)]:
        if name in files and name in outputs.todo:
            outputs.write(name, files[name])
