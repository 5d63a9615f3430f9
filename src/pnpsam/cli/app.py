"""``pnpsam app [--model ID|DIR|FILE|toy] [--host H] [--port N] [--share] [--cache DIR]
[--max-size PX] [--max-steps N] [--max-prompts N] [--queued-runs N] [--keep-files-minutes M]``.

Serves the web page (:mod:`pnpsam.app`): the model loads once; the page binds 127.0.0.1 unless
``--host`` says otherwise, and is public only with ``--share`` (with a warning). Without a GPU
the edit size, steps and prompts are capped (``Caps.for_device``); the ``--max-*`` flags raise
the caps up to ``config.LIMITS``.
"""

from __future__ import annotations

import argparse
import sys

from pnpsam.config import INTERACTIVE_FEATURE_BYTES, ConfigError
from pnpsam.options import OPTIONS, HelpFormatter, add_options, resolve_config

# the model flags of `pnpsam edit`: the model loads once, when the app starts
MODEL_OPTIONS = tuple(o for o in OPTIONS if o.section == "model")


def add_app_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "app",
        help="serve the web page: click the subject, type prompts, see the translations",
        description="Serve the pnp-sam web page (Gradio). Upload a photo, click the subject "
        "(SAM; GrabCut when SAM weights cannot be had), type target prompts, translate. "
        "Named API endpoints 'segment' and 'edit' work with gradio_client.",
        formatter_class=HelpFormatter,
    )
    add_options(parser, MODEL_OPTIONS)  # --model (toy too), --device, --dtype, ...
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also serve on a public gradio.live link (anyone with it can use this machine)",
    )
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="keep inverted latents in DIR (safetensors), shared with `pnpsam edit --cache`: a "
        "later edit of the same photo and settings skips the inversion (default: memory only)",
    )
    parser.add_argument(
        "--feature-memory-mb",
        type=float,
        default=INTERACTIVE_FEATURE_BYTES / 2**20,
        help="memory for kept source features: a re-edit of a known photo then costs only "
        "2 x steps UNet rows per prompt (0 keeps none)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=50.0, help="largest uploaded file, megabytes"
    )
    parser.add_argument(
        "--max-pixels", type=int, default=40_000_000, help="largest photo, pixels (w x h)"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        help="largest edit side in pixels (default: twice the model's side without a GPU, "
        "else config.LIMITS)",
    )
    parser.add_argument(
        "--max-steps", type=int, help="most sampling/inversion steps (default: 50 without a GPU)"
    )
    parser.add_argument(
        "--max-prompts", type=int, help="most prompts per run (default: 4 without a GPU)"
    )
    parser.add_argument(
        "--queued-runs",
        type=int,
        default=2,
        help="runs one browser session may have queued or running at once",
    )
    parser.add_argument(
        "--keep-files-minutes",
        type=float,
        default=60.0,
        help="delete run files and uploads after this many minutes (and when a session ends)",
    )
    parser.set_defaults(run=run_app, preset=None, config=None)
    return parser


def run_app(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 1..65535; got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels <= 0:
        raise ConfigError("--max-upload-mb and --max-pixels must be positive")
    for flag, value in (
        ("--max-size", args.max_size),
        ("--max-steps", args.max_steps),
        ("--max-prompts", args.max_prompts),
        ("--queued-runs", args.queued_runs),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1; got {value}")
    if not 0 < args.keep_files_minutes < float("inf"):
        raise ConfigError(f"--keep-files-minutes must be > 0; got {args.keep_files_minutes}")
    if not 0 <= args.feature_memory_mb < float("inf"):
        raise ConfigError(f"--feature-memory-mb must be >= 0; got {args.feature_memory_mb}")
    try:
        from pnpsam.app import AppSettings, build_app, serve
        from pnpsam.app.actions import Caps
    except ImportError as error:
        raise ConfigError(
            f"the app needs gradio ({error}); install it with: pip install 'pnpsam[app]'"
        ) from None
    from pnpsam.api import PnPEditor

    cfg = resolve_config(args, MODEL_OPTIONS)[0].model
    feature_bytes = int(args.feature_memory_mb * 2**20)
    editor = PnPEditor.from_pretrained(cfg, cache_dir=args.cache, feature_bytes=feature_bytes)
    default = Caps.for_device(editor.device.type, editor.pipeline.native_size)
    caps = Caps(
        size=args.max_size or default.size,
        steps=args.max_steps or default.steps,
        prompts=args.max_prompts or default.prompts,
    )
    settings = AppSettings(
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        caps=caps,
        queued_runs=args.queued_runs,
        keep_files_minutes=args.keep_files_minutes,
    )
    demo = build_app(editor, settings=settings)
    if args.share:
        print(
            "pnpsam app: warning: --share makes the page public: anyone with the link can "
            "upload photos and run the model on this machine",
            file=sys.stderr,
        )
    print(f"pnpsam app: serving {cfg.model} on http://{args.host}:{args.port}", flush=True)
    try:
        serve(demo, args.host, args.port, args.share, settings)
    except OSError as error:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {error}") from None
    return 0
