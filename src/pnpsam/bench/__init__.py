"""Benchmark harness: run named methods over a dataset, score them, tabulate and plot.

Python use::

    from pnpsam.bench import BenchmarkRunner, parse_methods
    runner = BenchmarkRunner(editor, editor.default_config(), "bench-out", metrics=metrics)
    result = runner.run(load_dataset("edits.jsonl"), parse_methods("pnp,pnp-masked"))

Command line: ``pnpsam bench`` (see :mod:`pnpsam.cli.bench`).
"""

from typing import TYPE_CHECKING

from pnpsam.lazy import lazy_exports

if TYPE_CHECKING:
    from pnpsam.bench.item import ItemResult, run_item
    from pnpsam.bench.report import Estimate, MethodSummary, mean_ci, summarize
    from pnpsam.bench.runner import BenchmarkRunner, BenchResult, read_rows
    from pnpsam.methods import (
        METHODS,
        MethodOutput,
        MethodSpec,
        MethodSpecError,
        parse_methods,
        sweep_methods,
    )

# The runner needs torch: everything is imported on first use, so `pnpsam --help` stays fast.
__getattr__ = lazy_exports(
    __name__,
    {
        "pnpsam.methods": (
            "METHODS",
            "MethodOutput",
            "MethodSpec",
            "MethodSpecError",
            "parse_methods",
            "sweep_methods",
        ),
        "pnpsam.bench.report": ("Estimate", "MethodSummary", "mean_ci", "summarize"),
        "pnpsam.bench.item": ("ItemResult", "run_item"),
        "pnpsam.bench.runner": ("BenchmarkRunner", "BenchResult", "read_rows"),
    },
)

__all__ = [
    "METHODS",
    "BenchResult",
    "BenchmarkRunner",
    "Estimate",
    "ItemResult",
    "MethodOutput",
    "MethodSpec",
    "MethodSpecError",
    "MethodSummary",
    "mean_ci",
    "parse_methods",
    "read_rows",
    "run_item",
    "summarize",
    "sweep_methods",
]
