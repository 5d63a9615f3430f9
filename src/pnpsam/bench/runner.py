"""Run methods over a dataset: per-item images, metric rows, summary table, plot and grid.

Output folder layout::

    rows.jsonl                      append-only: one row per (method, item, prompt) and run
    images/source/<item>.png        the source at the model's input size
    images/<method>/<item>_<k>.png  the edit for target prompt k
    summary.md, summary.csv         per method: mean and 95% CI of every metric
    tradeoff.png                    structure distance vs CLIP score per method
    grid.png                        sources and each method's first edit, first items
    bench.json                      what was run (methods, base config, dataset, timings)

``<item>`` and ``<method>`` are the id and label as safe file names (``pnpsam.paths.safe_name``):
a manifest id like ``../x`` or ``a/b`` never names a file outside ``images/<folder>/``.

Resumable: an item counts as done for a method when ``rows.jsonl`` holds rows for all its
prompts made with the same method and edit settings, and it is then skipped — its images and
rows are never rewritten. A failing item (unreadable image, missing mask, ...) gets a ``failed``
row with the error and the run goes on; a later run retries it only with ``retry_failed``
(``--retry-failed``), appending new rows (the newest row per item and prompt counts).

One (method, item) pair is :func:`run_item`: a pure function from the item to its rows and
images that writes nothing. The runner hands the pairs to an engine (:mod:`pnpsam.engines`)
(:class:`~pnpsam.engines.local.LocalEngine` by default, or
:class:`~pnpsam.engines.ray.RayEngine`: one editor per Ray actor) as
:class:`~pnpsam.bench.work.BenchWork`, and writes each result (images atomically, then its
rows) as it arrives, so a run resumes the same whatever the engine.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from pnpsam.api import PnPEditor
from pnpsam.bench.item import SOURCE_DIR, ItemResult, failed_rows, image_relpath
from pnpsam.bench.report import (
    MethodSummary,
    csv_table,
    latest_rows,
    markdown_table,
    summarize,
    tradeoff_plot,
)
from pnpsam.config import EditConfig, fingerprint
from pnpsam.engines.local import Engine, LocalEngine
from pnpsam.imageio import atomic_write, labelled_grid, save_json, save_png
from pnpsam.manifest import EditItem
from pnpsam.methods import MethodSpec
from pnpsam.metrics import EditMetrics, EditMetricsConfig
from pnpsam.outputs import append_lines, output_write_error, read_json_lines, sha256_file
from pnpsam.paths import inside

ROWS_FILE = "rows.jsonl"


@dataclass
class BenchResult:
    """What a run did and where it wrote."""

    out: Path
    summaries: list[MethodSummary]
    ran: int  # (method, item) pairs computed in this run
    skipped: int  # pairs already finished by an earlier run
    failed: int  # pairs that failed in this run
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of a ``rows.jsonl`` (a torn last line from a crash is skipped)."""
    return read_json_lines(path, ("method", "item", "status"))


def _append_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    append_lines(path, [json.dumps(row, default=_json_default) for row in rows])


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def settings_hash(spec: MethodSpec, config: EditConfig, resolved_model: str | None = None) -> str:
    """Short fingerprint of a method and its resolved edit settings (resume key).

    ``resolved_model`` (``editor.model_info()["resolved_path"]``) replaces the model as the
    user spelled it, so ``tiny-sd`` and its absolute path resume each other.
    """
    settings = config.to_dict()
    if resolved_model is not None:
        settings["model"]["model"] = resolved_model
    return fingerprint(
        {"method": spec.label, "params": spec.method_params(), "config": settings}, 16
    )


def _image_sha256(item: EditItem) -> str | None:
    """sha256 of the item's image file; None for a generated source or an unreadable file
    (its edit then fails and says why)."""
    return None if item.image_path is None else sha256_file(item.image_path)


class BenchmarkRunner:
    """Runs method specs over items with one loaded editor (and optional metric models)."""

    def __init__(
        self,
        editor: PnPEditor,
        base_config: EditConfig,
        out: str | Path,
        metrics: EditMetrics | None = None,
        progress: bool = True,
        grid_items: int = 8,
        retry_failed: bool = False,
        metrics_config: EditMetricsConfig | None = None,
        metrics_device: str | None = None,
    ) -> None:
        """``metrics``: loaded metric models for in-process runs; ``metrics_config`` (and
        ``metrics_device``, default the editor's): what each worker of another engine loads."""
        self.editor = editor
        self.base_config = editor.resolve(base_config)
        self.out = Path(out)
        self.metrics = metrics
        self.progress = progress
        self.grid_items = grid_items
        self.retry_failed = retry_failed  # False: a recorded failure counts as done
        self.metrics_config = metrics_config
        self.metrics_device = metrics_device

    @property
    def rows_path(self) -> Path:
        return self.out / ROWS_FILE

    def image_path(self, spec: MethodSpec | None, item: EditItem, index: int = 0) -> Path:
        """Where an image goes (:func:`image_relpath` inside the output folder)."""
        return inside(self.out, *image_relpath(spec, item, index).parts)

    def write_item(
        self, result: ItemResult, item: EditItem, spec: MethodSpec, settings: str
    ) -> list[dict[str, Any]]:
        """Write a :func:`run_item` result's images (atomically) and return the rows to append.

        A source image already on disk is kept: every method writes the same one. A full or
        read-only disk stops the run (:class:`~pnpsam.outputs.OutputWriteError`: recording
        every later item as failed would make a resumed run skip them); any other failed write
        turns the item's rows into ``failed`` rows, as a failed edit does.
        """
        try:
            for relpath, picture in result.images.items():
                path = inside(self.out, *Path(relpath).parts)
                if Path(relpath).parent == SOURCE_DIR and path.exists():
                    continue
                save_png(picture, path)
        except Exception as error:
            disk = output_write_error(error)
            if disk is not None:
                raise disk from error
            return failed_rows(item, spec, settings, error)
        return result.rows

    def run(
        self,
        items: Sequence[EditItem],
        methods: Sequence[MethodSpec],
        dataset: str = "",
        engine: Engine | None = None,
    ) -> BenchResult:
        """Run every method on every item not yet finished, then write the reports.

        ``engine``: where the pairs run (default: in this process, on ``self.editor``).
        """
        from pnpsam.bench.work import BenchPair, BenchWork  # it imports this module

        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        configs = {spec.label: self._config_for(spec) for spec in methods}
        weights = self.editor.model_info()["resolved_path"]
        hashes = {spec.label: settings_hash(spec, configs[spec.label], weights) for spec in methods}
        # resume is keyed on each image's bytes too: a photo replaced under the same path is
        # edited again, as `pnpsam edit` and `pnpsam batch` do
        images = {item.id: _image_sha256(item) for item in items}
        keys = {
            (spec.label, item.id): fingerprint([hashes[spec.label], images[item.id]], 16)
            for spec in methods
            for item in items
        }
        finished = self._finished(read_rows(self.rows_path), items, keys)
        pending = [
            (spec, item)
            for spec in methods
            for item in items
            if (spec.label, item.id) not in finished
        ]
        pairs = [
            BenchPair(spec, item, configs[spec.label], keys[spec.label, item.id])
            for spec, item in pending
        ]
        work = BenchWork(
            self.base_config,
            pairs,
            self.metrics_config,
            self.metrics_device,
            editor=self.editor,  # used in this process; a Ray actor loads its own
            metrics=self.metrics,
        )
        ran = failed = 0
        bar = tqdm(total=len(pairs), desc="bench", unit="edit", disable=not self.progress)
        for index, result in (engine or LocalEngine()).run(work, list(range(len(pairs)))):
            pair = pairs[index]
            bar.set_postfix_str(f"{pair.spec.label} / {pair.item.id}", refresh=False)
            rows = self.write_item(result, pair.item, pair.spec, pair.settings)
            _append_rows(self.rows_path, rows)
            ran += 1
            failed += any(row["status"] == "failed" for row in rows)
            bar.update()
        bar.close()
        summaries = summarize(read_rows(self.rows_path), [spec.label for spec in methods])
        files = self._write_reports(summaries, items, methods)
        seconds = time.perf_counter() - started
        save_json(
            {
                "dataset": dataset,
                "items": len(items),
                "methods": [spec.label for spec in methods],
                "base_config": self.base_config.to_dict(),
                "ran": ran,
                "skipped": len(methods) * len(items) - len(pending),
                "failed": failed,
                "seconds": seconds,
            },
            self.out / "bench.json",
        )
        skipped = len(methods) * len(items) - len(pending)
        return BenchResult(self.out, summaries, ran, skipped, failed, seconds, files)

    def _config_for(self, spec: MethodSpec) -> EditConfig:
        return spec.edit_config(self.base_config)

    def _finished(
        self,
        rows: Sequence[Mapping[str, Any]],
        items: Sequence[EditItem],
        keys: Mapping[tuple[str, str], str],
    ) -> set[tuple[str, str]]:
        """(method, item) pairs whose every prompt has a row under its current resume key."""
        prompts = {item.id: len(item.target_prompts) for item in items}
        ok: dict[tuple[str, str], set[int]] = {}
        done_statuses = {"ok"} if self.retry_failed else {"ok", "failed"}
        for row in latest_rows(rows):
            key = (row["method"], row["item"])
            if row["status"] in done_statuses and row.get("settings") == keys.get(key):
                ok.setdefault((row["method"], row["item"]), set()).add(int(row["prompt_index"]))
        return {key for key, done in ok.items() if len(done) == prompts.get(key[1], -1)}

    def _write_reports(
        self,
        summaries: Sequence[MethodSummary],
        items: Sequence[EditItem],
        methods: Sequence[MethodSpec],
    ) -> dict[str, Path]:
        files = {"rows": self.rows_path}
        for name, text in (
            ("summary.md", markdown_table(summaries)),
            ("summary.csv", csv_table(summaries)),
        ):
            files[name] = _write_text(self.out / name, text)
        plot = self.out / "tradeoff.png"
        if tradeoff_plot(summaries, plot):
            files["tradeoff.png"] = plot
        shown = list(items[: self.grid_items])
        if shown:
            grid = labelled_grid(
                [
                    [_open(self.image_path(None, item))]
                    + [_open(self.image_path(spec, item, 0)) for spec in methods]
                    for item in shown
                ],
                ["source", *[spec.label for spec in methods]],
                [item.id for item in shown],
            )
            save_png(grid, self.out / "grid.png")
            files["grid.png"] = self.out / "grid.png"
        return files


def _open(path: Path) -> Image.Image | None:
    if not path.is_file():
        return None
    with Image.open(path) as image:
        return image.convert("RGB")


def _write_text(path: Path, text: str) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)
    return path
