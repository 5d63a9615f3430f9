"""The driver of ``pnpsam batch``: plans the run, writes each photo's results, keeps the index.

Output folder::

    STEM_NN_PROMPT.png ...      one per prompt, named as ``pnpsam edit`` names them
    STEM_mask.png, STEM_mask_overlay.png   with a subject
    STEM.json                   the record (``pnpsam edit --config STEM.json`` reproduces it)
    STEM.json.partial           while a photo's files are written (as ``pnpsam edit``'s journal)
    index.jsonl                 append-only: one line per photo attempt, one per run summary

Resumable: a photo's files are an :class:`~pnpsam.outputs.OutputSet`, as ``pnpsam edit`` writes
them: the journal claims them, each PNG is written atomically, the record last (naming every
file and its sha256). A photo is finished when its record exists, was made with the same
settings (the image's bytes, prompts, config) and every file it lists exists. A re-run skips
finished photos without touching their files and skips photos whose latest index line says
``failed`` (under the same settings) unless ``retry_failed``. A killed run therefore loses at
most the photos in flight: their journals name their stray PNGs, which the next run rewrites,
and hidden temporaries it left are removed at start. A torn
last line of the index (killed mid-append) is ignored and never glued to the next line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from pnpsam.batch.jobs import PhotoJob
from pnpsam.batch.photo import PhotoResult, PhotoWork
from pnpsam.config import ConfigError, EditConfig
from pnpsam.engines.local import Engine
from pnpsam.errors import UserFileExistsError
from pnpsam.outputs import (
    OutputSet,
    append_lines,
    output_write_error,
    read_json_lines,
    remove_stale_temporaries,
)

INDEX_FILE = "index.jsonl"


class BatchAbortedError(ConfigError):
    """The run cannot go on (a worker could not load the model); the message says why."""


@dataclass
class BatchSummary:
    """What one run did: counts, time, throughput and UNet row-evaluations."""

    photos: int
    done: int  # finished in this run
    skipped: int  # finished (or failed, without retry) by an earlier run
    failed: int  # failed in this run
    seconds: float
    unet_evaluations: int  # of the photos done in this run
    engine: str

    @property
    def photos_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.photos} photos: {self.done} done, {self.skipped} skipped (finished earlier), "
            f"{self.failed} failed in {self.seconds:.1f} s ({self.photos_per_second:.2f} "
            f"photos/s, {self.engine} engine), {self.unet_evaluations} UNet row-evaluations"
        )


def read_index(path: Path) -> list[dict[str, Any]]:
    """The photo lines of an index (torn or foreign lines skipped), oldest first."""
    return read_json_lines(path, ("name", "status", "settings"))


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line (fsynced; after a torn last line, on a fresh line)."""
    append_lines(path, [json.dumps(row, default=str)])


class BatchRunner:
    """Runs jobs on an engine and writes their results into ``out`` (see the module docstring).

    ``config``: the run's edit config (each job applies its seed and subject to it).
    """

    def __init__(
        self,
        out: str | Path,
        config: EditConfig,
        retry_failed: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        self.out = Path(out)
        self.config = config
        self.retry_failed = retry_failed
        self.overwrite = overwrite  # redo photos finished under other settings
        self.progress = progress
        self.cache_dir = cache_dir  # on-disk inversion cache every worker uses

    @property
    def index_path(self) -> Path:
        return self.out / INDEX_FILE

    def finished(self, job: PhotoJob, settings: str) -> bool | str:
        """True when ``job`` is finished here under ``settings``; a reason text when other
        settings made it."""
        record_path = self.out / job.paths.record.name
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            made_with = record["batch"]["settings"]
            outputs = list(record["outputs"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if made_with != settings:
            return f"{record_path.name} exists from other settings"
        if record.get("subject_mask"):
            outputs += [job.paths.mask.name, job.paths.overlay.name]
        return all((self.out / name).is_file() for name in outputs)

    def plan(self, jobs: Sequence[PhotoJob]) -> tuple[list[PhotoJob], list[PhotoJob]]:
        """(jobs to run, jobs skipped); raises when another run's outputs are in the way."""
        latest = {row["name"]: row for row in read_index(self.index_path)}
        pending, skipped = [], []
        for job in jobs:
            settings = job.settings(self.config)  # the image's bytes: hashed once per run
            done = self.finished(job, settings)
            if isinstance(done, str) and not self.overwrite:
                raise UserFileExistsError(
                    f"{self.out}: {done}; pass --overwrite or choose another --out "
                    "(nothing was run)"
                )
            row = latest.get(job.name)
            failed_before = (
                row is not None and row["status"] == "failed" and row["settings"] == settings
            )
            if done is True or (failed_before and not self.retry_failed):
                skipped.append(job)
            else:
                pending.append(job)
        return pending, skipped

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete hidden temporaries that a killed run left in the output folder."""
        return remove_stale_temporaries(self.out)

    def write(self, job: PhotoJob, result: PhotoResult, engine: str) -> dict[str, Any]:
        """Write one result (PNGs, then the record) and return its index line."""
        row: dict[str, Any] = {
            "name": job.name,
            "image": job.image,
            "settings": result.settings,
            "engine": engine,
            "seconds": round(result.seconds, 3),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if result.ok and result.record is not None:
            record_name = job.paths.record.name
            try:
                # one journal format with `pnpsam edit`: STEM.json.partial claims the files and
                # notes each one's hash, the record comes last naming them (plan() already
                # refused other settings' finished photos unless --overwrite)
                outputs = OutputSet(
                    self.out, record_name, list(result.files), result.settings, overwrite=True
                )
                for name, data in result.files.items():
                    outputs.write(name, data)
                outputs.finish(result.record)
            except OSError as error:
                disk = output_write_error(error)
                if disk is not None:  # full or read-only: stop, a re-run finishes the photos
                    raise disk from error
                return {**row, "status": "failed", "error": f"cannot write: {error}"}
            files = [*result.files, record_name]
            evaluations = int(result.record.get("unet_evaluations", 0))
            return {**row, "status": "done", "files": files, "unet_evaluations": evaluations}
        return {**row, "status": "failed", "error": result.error}

    def run(self, jobs: Sequence[PhotoJob], engine: Engine) -> BatchSummary:
        """Run every unfinished job on ``engine``; returns the summary (also in the index)."""
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temporaries()
        pending, skipped = self.plan(jobs)
        by_name = {job.name: job for job in pending}
        done = failed = evaluations = 0
        bar = tqdm(total=len(pending), desc="batch", unit="photo", disable=not self.progress)
        try:
            work = PhotoWork(self.config, self.cache_dir, threads=torch.get_num_threads())
            for result in engine.run(work, pending):
                if result.fatal:
                    raise BatchAbortedError(result.error)
                job = by_name[result.name]
                row = self.write(job, result, engine.name)
                append_line(self.index_path, row)
                if row["status"] == "done":
                    done += 1
                    evaluations += row["unet_evaluations"]
                else:
                    failed += 1
                    bar.write(f"failed: {job.name}: {row['error']}")
                bar.set_postfix_str(job.name, refresh=False)
                bar.update()
        finally:
            bar.close()
        summary = BatchSummary(
            photos=len(jobs),
            done=done,
            skipped=len(skipped),
            failed=failed,
            seconds=time.perf_counter() - started,
            unet_evaluations=evaluations,
            engine=engine.name,
        )
        run_line = {**asdict(summary), "photos_per_second": summary.photos_per_second}
        append_line(self.index_path, {"run": run_line})
        return summary
