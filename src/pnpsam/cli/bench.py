"""``pnpsam bench``: run methods over a dataset and write the table, plot and grid.

Wire-in for the main CLI (two lines in ``pnpsam.cli.build_parser``)::

    from pnpsam.cli.bench import add_bench_parser
    add_bench_parser(subparsers)   # sets args.run = run_bench
"""

from __future__ import annotations

import argparse
import sys
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any, get_args

from pnpsam.bench.datasets import load_dataset
from pnpsam.cli.batch import add_engine_options, make_engine
from pnpsam.config import PRESETS, ConfigError, EditConfig, load_yaml
from pnpsam.manifest import EditItem
from pnpsam.masks.config import DEFAULT_SAM_MODEL
from pnpsam.methods import (
    METHODS,
    MethodSpec,
    parse_methods,
    split_method_list,
    sweep_methods,
)
from pnpsam.metrics.config import (
    ClipScoreConfig,
    LpipsBackend,
    LpipsConfig,
    StructureDistanceConfig,
)
from pnpsam.models.hub import check_available, unavailable
from pnpsam.options import OPTIONS, HelpFormatter, add_options, resolve_config

if TYPE_CHECKING:
    from pnpsam.engines.local import Engine

# The edit settings a benchmark usually varies: the same flags as ``pnpsam edit``.
BENCH_FLAGS = (
    "--model",
    "--device",
    "--dtype",
    "--size",
    "--inversion-steps",
    "--steps",
    "--guidance",
)
EDIT_OPTIONS = tuple(option for option in OPTIONS if option.flag in BENCH_FLAGS)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` on the main CLI's subparsers; sets ``run=run_bench``."""
    methods_help = "; ".join(f"{name}: {info.summary}" for name, info in METHODS.items())
    parser = subparsers.add_parser(
        "bench",
        help="run editing methods over a dataset; metrics table, trade-off plot, image grid",
        description="Run each method over the dataset (a JSONL/CSV manifest, a PnP TI2I yaml "
        "or a PIE-Bench folder) and write per-item images, rows.jsonl, summary.md/.csv (mean "
        "and 95% CI per method), grid.png and, with metrics, tradeoff.png. Re-running skips "
        "finished items. The metrics need DINO and CLIP weights (a download); offline, "
        "--no-metrics writes the images, timings and grid.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--dataset", required=True, help="manifest, TI2I yaml or PIE-Bench dir")
    parser.add_argument(
        "--methods",
        default="pnp",
        help="comma-separated NAME[:key=value...] specs, e.g. "
        f"'pnp,pnp-masked,sdedit:strength=0.5'. Methods: {methods_help}",
    )
    parser.add_argument("--out", default="bench-out", help="output folder (resumable)")
    parser.add_argument("--limit", type=int, help="only the first N items")
    parser.add_argument(
        "--sweep",
        help="ablation: KEY=V1,V2,... runs every method once per value (e.g. pnp_f_t=0.2,0.5,0.8)",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named edit settings")
    parser.add_argument("--config", help="YAML/JSON edit config (model/preprocess/inversion/pnp)")
    add_options(parser, EDIT_OPTIONS)
    metrics = parser.add_argument_group("metrics")
    metrics.add_argument(
        "--no-metrics",
        action="store_true",
        help="images, timings and grid only (no metric models, no tradeoff.png)",
    )
    metrics.add_argument("--metrics-device", default=None, help="default: the editor's device")
    metrics.add_argument("--dino-model", default=StructureDistanceConfig.model_id)
    metrics.add_argument("--clip-model", default=ClipScoreConfig.model_id)
    metrics.add_argument(
        "--lpips",
        choices=get_args(LpipsBackend),
        default=LpipsConfig.backend,
        help="lpips: the paper's (needs the lpips package); transformers: unweighted formula",
    )
    metrics.add_argument("--lpips-backbone", default=LpipsConfig.backbone_id)
    parser.add_argument(
        "--sam-model",
        default=None,
        help=f"SAM for items with points/box (default: the model's own, else {DEFAULT_SAM_MODEL})",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="re-run items recorded as failed"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_engine_options(parser)
    parser.set_defaults(run=run_bench)
    return parser


def _edit_config(args: argparse.Namespace) -> EditConfig:
    cfg, _ = resolve_config(args, EDIT_OPTIONS)
    if args.sam_model:
        cfg.mask.sam_model = args.sam_model
    return cfg


METRICS_ADVICE = (
    "give local folders (--dino-model, --clip-model, --lpips-backbone) or skip scoring with "
    "--no-metrics"
)


def metric_models(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(role, hub id or folder) of each metric model ``bench`` will load."""
    models = [("the DINO structure model", args.dino_model), ("the CLIP model", args.clip_model)]
    # "auto" uses the lpips package when installed, else the transformers backbone
    if args.lpips == "transformers" or (args.lpips == "auto" and not find_spec("lpips")):
        models.append(("the LPIPS backbone", args.lpips_backbone))
    return models


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"pnp_f_t=0.2,0.5"`` -> ("pnp_f_t", [0.2, 0.5]); values are YAML."""
    key, sep, raw = text.partition("=")
    values = [load_yaml(v, f"--sweep value {v!r}") for v in split_method_list(raw)]
    if not sep or not key.strip() or not values:
        raise ConfigError(f"--sweep expects KEY=V1,V2,...; got {text!r}")
    return key.strip(), values


def run_bench(args: argparse.Namespace) -> int:
    """Entry point of ``pnpsam bench`` (returns the exit status)."""
    # imported here, not at the top: they load torch, and `pnpsam --help` should not wait
    from pnpsam.outputs import OutputFolder

    methods = parse_methods(args.methods)
    if args.sweep:
        methods = sweep_methods(methods, *parse_sweep(args.sweep))
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be a count of items >= 1; got {args.limit}")
    items = load_dataset(args.dataset)
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        raise ConfigError(f"dataset {str(args.dataset)!r} holds no items: nothing to run")
    config = _edit_config(args)
    engine = make_engine(args)  # before loading anything: --engine ray needs Ray installed
    if not args.no_metrics:  # offline and not cached: fail now, not after loading the editor
        for what, model_id in metric_models(args):
            check_available(model_id, what, METRICS_ADVICE)
    side = config.preprocess.size or 512
    need = 2 * len(items) * len(methods) * side * side * 3  # PNGs, uncompressed
    with OutputFolder(args.out, "pnpsam bench", need):  # before any model loads
        return _run_locked(args, items, methods, config, engine)


def _run_locked(
    args: argparse.Namespace,
    items: list[EditItem],
    methods: list[MethodSpec],
    config: EditConfig,
    engine: Engine,
) -> int:
    from pnpsam.api import PnPEditor
    from pnpsam.bench.runner import BenchmarkRunner
    from pnpsam.metrics import EditMetrics, EditMetricsConfig

    editor = PnPEditor.from_pretrained(config.model)
    if args.quiet:
        editor.set_progress_bar_config(disable=True)
    device = args.metrics_device or editor.device
    metrics = metrics_config = None
    if not args.no_metrics:
        metrics_config = EditMetricsConfig(
            structure=StructureDistanceConfig(model_id=args.dino_model),
            clip=ClipScoreConfig(model_id=args.clip_model),
            lpips=LpipsConfig(backend=args.lpips, backbone_id=args.lpips_backbone),
        )
        try:
            if args.engine == "local":  # Ray actors load their own
                metrics = EditMetrics.from_pretrained(metrics_config, device=device)
        except OSError as error:  # not found, gated, or a local folder that is not there
            names = " / ".join(model_id for _, model_id in metric_models(args))
            raise unavailable(names, "the metric models", METRICS_ADVICE, error) from error
    runner = BenchmarkRunner(
        editor,
        config,
        args.out,
        metrics=metrics,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        metrics_config=metrics_config,
        metrics_device=args.metrics_device,
    )
    result = runner.run(items, methods, dataset=str(args.dataset), engine=engine)
    print((result.out / "summary.md").read_text(encoding="utf-8"))
    print(
        f"ran {result.ran}, skipped {result.skipped} (already done), failed {result.failed} "
        f"in {result.seconds:.1f} s"
    )
    for path in result.files.values():
        print(path)
    failed = sum(summary.items_failed for summary in result.summaries)
    if failed:
        # every recorded failure counts, also those a resumed run skipped
        total = failed + sum(summary.items_ok for summary in result.summaries)
        print(
            f"pnpsam bench: {failed} of {total} (method, item) pairs failed "
            f"({result.failed} in this run); the errors are in {result.out / 'rows.jsonl'}, "
            "--retry-failed runs them again",
            file=sys.stderr,
        )
        return 1
    return 0
