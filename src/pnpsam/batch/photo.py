"""One photo of a batch, as a pure function: :func:`edit_photo` writes nothing.

Both engines call it (in-process, or in Ray actors) and hand its :class:`PhotoResult` — the
encoded PNG bytes and the JSON record — to the driver, which alone writes files. The PNGs are
encoded here, once, by :func:`pnpsam.outputs.edit_files` (the writer of ``pnpsam edit`` too), so
every engine writes the same bytes.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import torch

from pnpsam.api import PnPEditor
from pnpsam.batch.jobs import PhotoJob
from pnpsam.config import EditConfig
from pnpsam.errors import UserError
from pnpsam.imageio import load_image
from pnpsam.outputs import edit_files


@dataclass
class PhotoResult:
    """What :func:`edit_photo` made of one job.

    ``files``: file name -> PNG bytes (the edits, and the subject mask and overlay when there
    is a subject), in writing order; the record (``record``) is written last, by the driver.
    ``error``: the failure's one-line reason (then ``files`` is empty and ``record`` None).
    """

    name: str
    settings: str
    files: dict[str, bytes] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    error: str | None = None
    seconds: float = 0.0
    fatal: bool = False  # the worker could not start (model not loaded): stop the run

    @property
    def ok(self) -> bool:
        return self.error is None

    def pack(self) -> bytes:
        """One bytes blob (JSON header line, then the files), for transport between processes."""
        header = {
            "name": self.name,
            "settings": self.settings,
            "record": self.record,
            "error": self.error,
            "seconds": self.seconds,
            "fatal": self.fatal,
            "files": [[name, len(data)] for name, data in self.files.items()],
        }
        return b"".join([json.dumps(header).encode(), b"\n", *self.files.values()])

    @classmethod
    def unpack(cls, blob: bytes) -> PhotoResult:
        head, _, body = blob.partition(b"\n")
        header = json.loads(head)
        files, offset = {}, 0
        for name, size in header["files"]:
            files[name] = body[offset : offset + size]
            offset += size
        return cls(
            header["name"],
            header["settings"],
            files,
            header["record"],
            header["error"],
            header["seconds"],
            header["fatal"],
        )


def edit_photo(editor: PnPEditor, job: PhotoJob, config: EditConfig) -> PhotoResult:
    """Edit one photo by all its prompts (one inversion); a user error (unreadable photo, bad
    subject, ...) comes back as a failed result, an internal error propagates.

    ``config``: the run's config; the job's seed and subject are applied to it. The record is
    ``EditResult.record`` (so ``pnpsam edit --config`` of it reproduces the PNGs) plus a
    ``batch`` entry with the job's name and settings digest.
    """
    started = time.perf_counter()
    settings = job.settings(config)
    try:
        cfg = job.config(config)
        picture = load_image(job.image, cfg.preprocess.max_input_pixels)
        result = editor.edit(picture, list(job.prompts), cfg)
        paths = job.paths
        edited = dict(enumerate(result.images))
        subject = None if result.subject is None else result.subject.mask
        files = edit_files(paths, edited, result.source, subject)
        record = result.record(job.image, [p.name for p in paths.pngs])
        record["batch"] = {"name": job.name, "settings": settings}
    except UserError as error:  # a bad photo is recorded and the run goes on; bugs propagate
        reason = traceback.format_exception_only(type(error), error)[-1].strip()
        return PhotoResult(job.name, settings, error=reason, seconds=time.perf_counter() - started)
    return PhotoResult(job.name, settings, files, record, seconds=time.perf_counter() - started)


@dataclass
class PhotoWork:
    """``pnpsam batch``'s :class:`~pnpsam.engines.local.Work`: load the model once, edit jobs.

    Picklable before ``setup`` (configs only): Ray ships it to each actor, which loads its own
    model there.
    """

    config: EditConfig
    cache_dir: str | None = None  # on-disk inversion cache (``--cache``), shared by workers
    # torch's CPU threads in every worker: float sums are split by thread, so the count
    # decides the last bit of a pixel; the driver's count, so every engine writes its bytes
    threads: int | None = None
    editor: PnPEditor | None = None

    def setup(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        if self.editor is None:
            self.editor = PnPEditor.from_pretrained(self.config.model, cache_dir=self.cache_dir)
            self.editor.set_progress_bar_config(disable=True)

    def __call__(self, job: PhotoJob) -> PhotoResult:
        if self.editor is None:
            self.setup()
        assert self.editor is not None
        return edit_photo(self.editor, job, self.config)

    def failed(self, job: PhotoJob, reason: str) -> PhotoResult:
        return PhotoResult(job.name, job.settings(self.config), error=reason, fatal=True)

    def encode_task(self, job: PhotoJob) -> str:
        return json.dumps(job.to_dict())

    def decode_task(self, text: str) -> PhotoJob:
        return PhotoJob.from_dict(json.loads(text))

    def encode_result(self, result: PhotoResult) -> bytes:
        return result.pack()

    def decode_result(self, blob: bytes) -> PhotoResult:
        return PhotoResult.unpack(blob)

    def __getstate__(self) -> dict[str, Any]:
        # a loaded model never travels: each process loads its own
        return {**self.__dict__, "editor": None}
