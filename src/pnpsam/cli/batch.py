"""``pnpsam batch INPUT --out DIR``: edit a folder of photos (or a manifest), resumably.

INPUT is a folder (every photo gets each ``--prompt`` and the subject options given, e.g.
``--subject TEXT``) or a JSONL/CSV manifest (the ``bench`` schema: image, prompts, optional
points/box/mask/subject/seed/id per line). Every option of ``pnpsam edit`` applies.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pnpsam.config import PRESETS, ConfigError, check_limit
from pnpsam.options import OPTIONS, HelpFormatter, add_options, resolve_config

if TYPE_CHECKING:
    from pnpsam.engines.local import Engine


def add_batch_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "batch",
        help="translate a folder of photos (or a manifest), resumably, locally or on Ray",
        description="Edit every photo of INPUT (a folder, or a .jsonl/.csv manifest) by its "
        "prompts: per photo one inversion, the outputs and JSON record `pnpsam edit` writes, "
        "and a line in OUT/index.jsonl. Re-running skips finished photos (and photos that "
        "failed, unless --retry-failed); a killed run loses only the photos in flight.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", help="folder of photos, or a .jsonl/.csv manifest")
    parser.add_argument(
        "--prompt",
        action="append",
        default=None,
        help="target prompt for every photo of a folder; repeat for several",
    )
    parser.add_argument("--out", default="out", help="output folder (resumable)")
    parser.add_argument("--config", help="YAML/JSON config (or a JSON record of an earlier run)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named settings, see README")
    parser.add_argument(
        "--retry-failed", action="store_true", help="run again the photos that failed before"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo photos whose outputs in --out were made with other settings",
    )
    parser.add_argument(
        "--confine",
        action="store_true",
        help="a manifest's image and mask paths must stay inside its folder (for manifests "
        "from others: no absolute paths, no '..' out of it, no links leading out)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="keep inverted latents in DIR (safetensors), shared by every worker: a later run "
        "over the same photos with the same model and inversion settings skips the inversions",
    )
    add_engine_options(parser)
    add_options(parser, OPTIONS)
    parser.set_defaults(run=run_batch)
    return parser


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine`` and the Ray pool's options (``batch`` and ``bench``)."""
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: in this process, the model loaded once; ray: a Ray actor pool, the "
        "model loaded once per actor (pip install pnpsam[ray])",
    )
    engine.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Ray actors (default: as many as the cluster's GPUs or CPUs allow with the "
        "per-worker shares)",
    )
    engine.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray actor")
    engine.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs per Ray actor")
    engine.add_argument(
        "--ray-address",
        default=None,
        help="join this Ray cluster ('auto', or ray://HOST:10001); default: a local Ray",
    )


def make_engine(args: argparse.Namespace) -> Engine:
    """The engine ``--engine`` names (the Ray one checks that Ray is installed)."""
    if args.workers is not None:
        check_limit("workers", args.workers)
        if args.engine != "ray":
            raise ConfigError(
                f"--workers {args.workers} is for --engine ray; the local engine edits one "
                "photo at a time in this process"
            )
    if args.engine == "ray":
        from pnpsam.engines.ray import RayEngine

        return RayEngine(args.workers, args.gpus_per_worker, args.cpus_per_worker, args.ray_address)
    from pnpsam.engines.local import LocalEngine

    return LocalEngine()


def run_batch(args: argparse.Namespace) -> int:
    from pnpsam.batch import BatchRunner, load_jobs
    from pnpsam.outputs import OutputFolder

    cfg, data = resolve_config(args, OPTIONS)
    prompts = args.prompt or data.get("prompts")
    jobs = load_jobs(args.input, prompts, seed=cfg.pnp.seed, confine=args.confine)
    engine = make_engine(args)
    runner = BatchRunner(
        args.out,
        cfg,
        retry_failed=args.retry_failed,
        overwrite=args.overwrite,
        progress=not args.quiet,
        cache_dir=args.cache,
    )
    side = cfg.preprocess.size or 512
    need = len(jobs) * 4 * side * side * 3  # a PNG per photo, uncompressed
    with OutputFolder(args.out, "pnpsam batch", need):  # one writer; checked before any model
        summary = runner.run(jobs, engine)
    print(f"pnpsam batch: {summary.line()}")
    print(runner.index_path)
    return 1 if summary.failed else 0
