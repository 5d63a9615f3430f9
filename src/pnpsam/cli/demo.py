"""``pnpsam demo``: every method side by side on toy-world photos, with measured meaning.

Writes ``grid.png`` (labelled: rows = source/prompt pairs, columns = methods) and
``metrics.md`` / ``metrics.json`` (one row per method, means over the pairs), all three again
after every pair (so a stopped run leaves the pairs it finished), and keeps every edit in
``images/`` and ``edits.jsonl``: a re-run with the same model and steps resumes where it
stopped, and a larger ``--pairs`` adds only the new pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pnpsam.bench.toy import DEMO_METHODS, METHOD_NAMES, TOY_SETS
from pnpsam.config import TOY_MODEL_DIR, Device, ModelConfig, capped_steps, model_defaults
from pnpsam.errors import InputError
from pnpsam.methods import parse_methods
from pnpsam.options import HelpFormatter
from pnpsam.toyworld.world import TOY_VOCABULARY

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from pnpsam.bench.toy import ClickedMasks
    from pnpsam.toyworld.pairs import ToyPair

TOY_MODEL = TOY_MODEL_DIR

__all__ = ["DEMO_METHODS", "METHOD_NAMES", "TOY_MODEL", "add_demo_parser", "run_demo"]


def comparison_grid(
    pairs: Sequence[ToyPair],
    outputs: dict[str, list[np.ndarray]],
    scale: int = 2,
    clicked: ClickedMasks | None = None,
) -> Image.Image:
    """Rows = pairs, columns = source, the clicked mask (with ``clicked``: tinted over the
    source, the click as a green dot, its IoU with the exact mask in the label) then each
    method; labels above, prompts at the left."""
    from PIL import Image

    from pnpsam.imageio import labelled_grid
    from pnpsam.masks import overlay_mask

    side = pairs[0].image.shape[0] * scale
    tiles = []
    for row, pair in enumerate(pairs):
        shown = [pair.image]
        if clicked is not None:
            shown.append(overlay_mask(pair.image, clicked.masks[row], points=[clicked.clicks[row]]))
        tiles.append([*shown, *(images[row] for images in outputs.values())])
    rows = [[Image.fromarray(tile) for tile in row_tiles] for row_tiles in tiles]
    mask_column = [] if clicked is None else [f"mask: 1 click ({clicked.method})"]
    return labelled_grid(
        rows,
        ["source", *mask_column, *(METHOD_NAMES.get(k, k) for k in outputs)],
        [f"{pair.source.caption}\n-> {pair.target.caption}" for pair in pairs],
        cell=side + 2,  # the 1-pixel gutter keeps the enlargement an exact ``scale``
        label_width=150,
    )


def add_demo_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="compare every method on toy-world images, offline (start here)",
        description="Runs the subject-aware default (method 'subject'), fresh noise, no "
        "injection, plain PnP, the report's schemes 1-3 and mask-aware injection on cluttered "
        "toy-world photos with the shipped toy model, then writes a labelled comparison grid "
        "(grid.png) and a metrics table (metrics.md, metrics.json), updated after every pair. "
        "Every edit is kept (images/, edits.jsonl): a stopped run resumes where it stopped. "
        "Each source's caption is given as --source-prompt, so --background-intent auto keeps "
        "the background when a target keeps it. A quick look: --pairs 2 --steps 10.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.add_argument(
        "--model",
        default=str(TOY_MODEL),
        help=f"toy-world model folder ('toy': the shipped one: {TOY_VOCABULARY})",
    )
    parser.add_argument("--pairs", type=int, default=6, help="source/target pairs")
    parser.add_argument("--steps", type=int, default=50, help="inversion and sampling steps")
    parser.add_argument("--seed", type=int, default=0, help="which toy sources")
    parser.add_argument(
        "--set",
        choices=sorted(TOY_SETS),
        help="a fixed pair set instead of --seed: dev (tune on it) or held-out (report on it; "
        f"seeds {', '.join(f'{k}={v}' for k, v in TOY_SETS.items())})",
    )
    parser.add_argument(
        "--keep-background",
        action="store_true",
        help="targets change the subject colour only (default: colour and background)",
    )
    parser.add_argument(
        "--methods", default=",".join(DEMO_METHODS), help="method specs, as for pnpsam bench"
    )
    parser.add_argument(
        "--mask",
        choices=("click", "exact"),
        default="click",
        help="the subject mask every method uses: 'click' = one click at the subject's centre "
        "through the model's SAM (the toy's own SAM for the toy model; GrabCut if none), shown "
        "in the grid; 'exact' = the render's exact mask (scores always use the exact one)",
    )
    parser.add_argument("--device", default="auto", choices=get_args(Device), help="where to run")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run_demo)
    return parser


def run_demo(args: argparse.Namespace) -> int:
    # imported here, not at the top: they load torch, and `pnpsam --help` should not wait
    from pnpsam.api import PnPEditor
    from pnpsam.bench.toy import ToyEditStore, click_masks, run_toy_comparison
    from pnpsam.outputs import check_writable
    from pnpsam.toyworld.pairs import toy_pairs

    if args.pairs < 1:
        raise InputError(f"--pairs must be >= 1; got {args.pairs}")
    if args.steps < 1:
        raise InputError(f"--steps must be >= 1; got {args.steps}")
    args.steps = capped_steps(args.steps)
    methods = parse_methods(args.methods)
    out = Path(args.out)
    check_writable(out)  # a read-only --out fails now, not after every edit
    editor = PnPEditor.from_pretrained(ModelConfig(model=args.model, device=args.device))
    editor.set_progress_bar_config(disable=True)
    seed = TOY_SETS[args.set] if args.set else args.seed
    pairs = toy_pairs(args.pairs, seed, change_background=not args.keep_background)
    clicked = click_masks(editor, pairs) if args.mask == "click" else None
    for note in clicked.notes if clicked is not None else ():
        print(f"pnpsam demo: mask: {note}", file=sys.stderr)
    # what decides every edit besides the pair and the method: a change means editing again
    store = ToyEditStore(
        out, {"model": editor.model_info()["resolved_path"], "steps": args.steps, "v": 1}
    )
    masks = clicked.masks if clicked is not None else None
    done_before = sum(
        store.get(i, pair, spec, masks[i] if masks is not None else None) is not None
        for i, pair in enumerate(pairs)
        for spec in methods
    )
    if done_before:
        print(
            f"pnpsam demo: resuming in {out}: {done_before} of {len(pairs) * len(methods)} edits "
            "were made by an earlier run and are kept",
            file=sys.stderr,
        )
    started = time.perf_counter()

    def write(rows: list[dict[str, Any]], outputs: dict[str, list[np.ndarray]]) -> str:
        took = time.perf_counter() - started
        return _write_results(args, out, pairs, seed, rows, outputs, took, clicked)

    rows, outputs = run_toy_comparison(
        editor,
        pairs,
        methods,
        args.steps,
        not args.quiet,
        store=store,
        on_pair=write if len(pairs) > 1 else None,  # the partial grid and table, pair by pair
        masks=masks,
    )
    table = write(rows, outputs)
    print(table)
    print(f"wrote {out / 'grid.png'}, {out / 'metrics.md'}, {out / 'metrics.json'}")
    return 0


def _write_results(
    args: argparse.Namespace,
    out: Path,
    pairs: Sequence[ToyPair],
    seed: int,
    rows: list[dict[str, Any]],
    outputs: dict[str, list[np.ndarray]],
    seconds: float,
    clicked: ClickedMasks | None,
) -> str:
    """Write grid.png, metrics.md and metrics.json for the pairs done so far; returns the table."""
    from pnpsam.bench.toy import metrics_markdown, toy_summary
    from pnpsam.imageio import atomic_write, save_json, save_png

    done = len(next(iter(outputs.values())))
    rows = toy_summary(rows)
    save_png(comparison_grid(pairs[:done], outputs, clicked=clicked), out / "grid.png")
    targets = "colour" if args.keep_background else "colour and background"
    where = f"set {args.set}" if args.set else f"seed {seed}"
    partial = "" if done == len(pairs) else f"; partial: {done} of {len(pairs)} pairs so far"
    mask = "exact masks"
    if clicked is not None:
        mean_iou = sum(clicked.ious[:done]) / done
        mask = f"masks from 1 click ({clicked.method}, IoU with the exact mask {mean_iou:.2f})"
    table = metrics_markdown(
        rows, done, f" ({where}, targets: {targets}, {mask}, {args.steps} steps{partial})"
    )
    atomic_write(out / "metrics.md", lambda tmp: tmp.write_text(table))
    save_json(
        {
            "model": args.model,
            "pairs": done,
            "pairs_planned": len(pairs),
            "complete": done == len(pairs),
            "set": args.set,
            "seed": seed,
            "targets": targets,
            "steps": args.steps,
            "mask": args.mask,
            "mask_method": clicked.method if clicked is not None else "exact",
            "mask_iou": clicked.ious[:done] if clicked is not None else None,
            "methods": rows,
            "seconds": seconds,
            "toy_edit_defaults": model_defaults(args.model),
        },
        out / "metrics.json",
    )
    return table
