"""Output folders the front ends write into: one writer at a time, sets whole or absent.

``OutputFolder`` is entered before any model loads: it checks that the folder is writable and
has some free space, takes the folder's lock (``.pnpsam.lock``: the holder's pid, host and
command; a second run fails at once naming the holder, a lock left by a dead process is taken
over with a warning) and removes temporaries a killed run left behind.

``OutputSet`` writes files that belong together (an edit's PNGs, mask and overlay) so that a
reader never takes a partial set for a finished one: every file is written atomically, a
journal ``NAME.partial`` (JSON lines, visible on purpose) claims the planned names and records
each finished file's sha256, and the record ``NAME`` is written last, naming every file and its
hash. A re-run of the same command keeps what the journal or record verifies and computes the
rest; a finished set made with other settings is refused unless ``overwrite``, which then also
removes the old set's files that the new set does not name.

Write errors (disk full, read-only folder, quota) become :class:`OutputWriteError` with one
line saying what to do; nothing torn is left behind and the run can be finished later.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pnpsam.errors import UserError
from pnpsam.imageio import atomic_write

LOCK_NAME = ".pnpsam.lock"
JOURNAL_SUFFIX = ".partial"
MIN_FREE_BYTES = 8 << 20  # refuse to start with less free space than this (plus the estimate)
# errno values that mean "this folder cannot take the output", not a bug
WRITE_ERRNOS = {
    *(errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM),
    errno.ENAMETOOLONG,  # a folder or file name over the file system's limit (255 bytes)
}
# atomic_write's temporaries: ".NAME.XXXXXXXX.SUFFIX" (tempfile.mkstemp's 8 random characters)
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}(?P<suffix>\.[^.]*)?$")
_TEMPORARY_DEPTH = 2  # the folder and two levels below (bench: images/<method>/)


class OutputError(UserError, OSError):
    """The output folder cannot be used as asked; the message names it and what to do."""


class OutputLockedError(OutputError):
    """Another live process holds the output folder's lock."""


class OutputExistsError(OutputError):
    """Finished outputs made with other settings (or foreign files) would be replaced."""


class OutputWriteError(OutputError):
    """The folder is not writable or the disk is full; finished files are kept."""


# -- writing ---------------------------------------------------------------------------------
def _write_file(path: Path, data: bytes) -> None:
    """Write all of ``data`` to ``path`` and flush it to the disk (fsync)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(path: Path, error: OSError) -> OutputWriteError:
    """The one-line error for an OSError met while writing ``path``."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "free some space and re-run the same command: finished files are kept"
    elif error.errno == errno.ENAMETOOLONG:
        hint = "choose a shorter --out (a name may have at most 255 bytes)"
    else:
        hint = "choose a writable --out"
    return OutputWriteError(f"cannot write {str(path)!r}: {reason}; {hint}")


def output_write_error(error: BaseException) -> OutputWriteError | None:
    """``error`` as an :class:`OutputWriteError` when it means the folder cannot take files
    (full, read-only, quota), else None (a bug or a bad input, reported as it is)."""
    if isinstance(error, OutputWriteError):
        return error
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return write_error(Path(str(error.filename or "the output folder")), error)
    return None


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OutputError:
        raise
    except OSError as error:
        if error.errno in WRITE_ERRNOS:
            raise write_error(path, error) from error
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write ``data`` (temporary file, fsync, rename); disk errors named."""
    with _writing(path):
        atomic_write(path, lambda tmp: _write_file(tmp, data))


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG in memory (so its hash is known before it is written)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def append_lines(path: Path, lines: Iterable[str]) -> None:
    """Append whole lines to a JSON-lines file, fsynced; a torn last line is ended first.

    A crash or a full disk can leave the last line torn; ending it with a newline before
    appending keeps the new lines readable (readers skip the torn one).
    """
    text = "".join(line.rstrip("\n") + "\n" for line in lines)
    with _writing(path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                text = "\n" + text
            data = memoryview(text.encode("utf-8"))
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json_lines(path: Path, required: Iterable[str]) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file that hold every ``required`` key, oldest first.

    Torn lines (a crash mid-append) and foreign lines are skipped; a missing file is empty.
    """
    if not path.is_file():
        return []
    keys = set(required)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and keys <= row.keys():
            rows.append(row)
    return rows


def sha256_file(path: str | os.PathLike[str]) -> str | None:
    """Hex sha256 of a file's bytes, or None when it cannot be read."""
    try:
        return file_sha256(path)
    except OSError:
        return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- checks before a run ---------------------------------------------------------------------
def check_writable(folder: Path, need_bytes: int = 0) -> None:
    """Raise :class:`OutputWriteError` unless ``folder`` (made if missing) takes a file and has
    ``MIN_FREE_BYTES + need_bytes`` free."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pnpsam-probe.", dir=folder)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        raise OutputWriteError(
            f"output folder {str(folder)!r} is not writable ({reason}); choose another --out"
        ) from error
    free = shutil.disk_usage(folder).free
    need = MIN_FREE_BYTES + max(0, need_bytes)
    if free < need:
        raise OutputWriteError(
            f"output folder {str(folder)!r} has {free / 2**20:.1f} MiB free, needs about "
            f"{need / 2**20:.1f} MiB; free some space or choose another --out"
        )


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove ``atomic_write`` temporaries left in ``folder`` (two levels deep) by a killed run.

    Call it only while holding the folder's lock: a live writer's temporary would go too.
    """
    removed: list[Path] = []
    level = [folder]
    for _ in range(_TEMPORARY_DEPTH + 1):
        below: list[Path] = []
        for directory in level:
            try:
                entries = list(os.scandir(directory))
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    below.append(Path(entry.path))
                    continue
                match = _TEMPORARY.match(entry.name)
                if match and (match["suffix"] or "") == Path(match["name"]).suffix:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
        level = below
    return removed


# -- the lock ----------------------------------------------------------------------------------
def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), to tell a reused pid from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the command name


def _alive(pid: int, start: str | None) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    now = _process_start(pid)
    return start is None or now is None or now == start


@dataclass(frozen=True)
class LockHolder:
    """Who holds an output folder's lock."""

    pid: int
    host: str
    command: str
    started: str
    token: str = ""
    process_start: str | None = None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} ({self.command}, since {self.started})"

    @classmethod
    def read(cls, path: Path) -> LockHolder | None:
        """The holder recorded in a lock file; None when missing or not a lock file."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                pid=int(data["pid"]),
                host=str(data["host"]),
                command=str(data.get("command", "?")),
                started=str(data.get("started", "?")),
                token=str(data.get("token", "")),
                process_start=data.get("process_start"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


class OutputLock:
    """``folder/.pnpsam.lock``, created exclusively; released (removed) by its holder."""

    def __init__(self, folder: str | os.PathLike[str], command: str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.holder: LockHolder | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputLockedError` naming the live holder."""
        mine = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=self.command,
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
            token=uuid.uuid4().hex,
            process_start=_process_start(os.getpid()),
        )
        text = json.dumps(mine.__dict__)
        for _ in range(20):
            if self._create(text):
                self.holder = mine
                return
            held = LockHolder.read(self.path)
            if held is not None and (
                held.host != mine.host or _alive(held.pid, held.process_start)
            ):
                raise OutputLockedError(
                    f"output folder {str(self.folder)!r} is in use by {held.describe()}; wait "
                    f"for it to finish or use another --out (if that process is gone, remove "
                    f"{str(self.path)!r})"
                )
            self._take_over(held)
        raise OutputLockedError(f"could not take the lock {str(self.path)!r}; try again")

    def _create(self, text: str) -> bool:
        """Create the lock with its whole content at once (link of a written temporary)."""
        with _writing(self.path):
            fd, tmp = tempfile.mkstemp(prefix=f".{LOCK_NAME}.", suffix=".lock", dir=self.folder)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
                os.close(fd)
                os.link(tmp, self.path)  # fails if the lock exists: O_EXCL with content
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)

    def _take_over(self, stale: LockHolder | None) -> None:
        """Remove a dead holder's lock; a directory flock makes one taker win the race."""
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            _flock(directory)
            if LockHolder.read(self.path) == stale and (stale is not None or self._old()):
                self.path.unlink(missing_ok=True)
                who = stale.describe() if stale else "an unreadable lock file"
                warnings.warn(
                    f"took over the lock of {str(self.folder)!r} left by {who}, no longer running",
                    StaleLockWarning,
                    stacklevel=3,
                )
            else:
                time.sleep(0.05)
        finally:
            os.close(directory)  # closing releases the flock

    def _old(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime > 10.0
        except FileNotFoundError:
            return True

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        if self.holder is not None and LockHolder.read(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        self.holder = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StaleLockWarning(UserWarning):
    """A lock left by a process that no longer runs was taken over."""


def _flock(fd: int) -> None:
    if sys.platform != "win32":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)


# -- the folder and its sets ------------------------------------------------------------------
class OutputFolder:
    """An output folder held for one run: checked, locked, cleaned of stale temporaries.

    ``need_bytes``: an estimate of what the run writes (checked free, with ``MIN_FREE_BYTES``).
    A folder this object made and left empty is removed again on exit.
    """

    def __init__(self, folder: str | os.PathLike[str], command: str, need_bytes: int = 0) -> None:
        self.path = Path(folder)
        self.command = command
        self.need_bytes = need_bytes
        self.lock = OutputLock(self.path, command)
        self.removed_temporaries: list[Path] = []
        self._made: list[Path] = []

    def __enter__(self) -> OutputFolder:
        missing = self.path
        while not missing.exists() and missing.parent != missing:
            self._made.append(missing)
            missing = missing.parent
        try:
            check_writable(self.path, self.need_bytes)
            self.lock.acquire()
        except BaseException:
            self._remove_made()
            raise
        self.removed_temporaries = remove_stale_temporaries(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()
        self._remove_made()

    def _remove_made(self) -> None:
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break

    def output_set(
        self,
        record: str,
        planned: Sequence[str],
        settings: str,
        overwrite: bool = False,
        required: Sequence[str] | None = None,
        family: Callable[[str], bool] | None = None,
    ) -> OutputSet:
        """Start (or resume) the set whose record is ``record``; see :class:`OutputSet`."""
        return OutputSet(self.path, record, planned, settings, overwrite, required, family)


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or "prompt"


@dataclass(frozen=True)
class OutputPaths:
    """Where one edit's files go: a PNG per prompt, the subject mask and overlay, the record.

    The one naming rule of ``pnpsam edit``, shared by the batch runner and the web app.
    """

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

    def family(self, name: str) -> bool:
        """Whether ``name`` is an output of an edit of this image (any prompts)."""
        stem = re.escape(self.record.stem)
        return (
            re.fullmatch(rf"{stem}(_\d{{2}}_[a-z0-9-]+|_mask|_mask_overlay)\.png", name) is not None
        )


def edit_files(
    paths: OutputPaths,
    edited: Mapping[int, Image.Image],
    source: Image.Image,
    subject: np.ndarray | None,
) -> dict[str, bytes]:
    """The files of one edit, PNG-encoded, by name: the one writer of ``edit``, ``batch`` and
    the web app (they write these bytes where they keep their sets).

    ``edited``: prompt index -> edited image (the prompts still to write); ``source``: the
    model's input image; ``subject``: the subject mask used (``HxW`` float in [0, 1], 1 =
    subject) or None. Names (:class:`OutputPaths`): each edit's PNG, then, with a subject, the
    grey mask (255 = subject, as ``--mask`` reads it back) and the overlay (subject tinted).
    """
    files = {paths.pngs[k].name: png_bytes(image) for k, image in edited.items()}
    if subject is not None:
        # OpenCV and SciPy load only when a subject is written
        from pnpsam.masks.ops import overlay_mask

        grey = Image.fromarray((subject * 255).round().astype(np.uint8))
        overlay = Image.fromarray(overlay_mask(np.asarray(source), subject))
        files[paths.mask.name] = png_bytes(grey)
        files[paths.overlay.name] = png_bytes(overlay)
    return files


class OutputSet:
    """Files written together, a record written last naming each and its sha256.

    ``planned``: file names (relative to the folder) this run may write; ``required``: those the
    record must name for the set to count as finished (default: all planned); ``settings``: a
    digest of everything that decides the files' content (:func:`pnpsam.config.fingerprint`);
    ``family``: which names belong to sets of this record (removed with ``overwrite`` when not
    planned).

    After construction ``todo`` lists the planned names still to write (verified files are
    kept) and ``complete`` says the record is already finished with these settings. ``draft``
    is the record an earlier, interrupted run of the same settings prepared (or None).
    """

    def __init__(
        self,
        folder: Path,
        record: str,
        planned: Sequence[str],
        settings: str,
        overwrite: bool = False,
        required: Sequence[str] | None = None,
        family: Callable[[str], bool] | None = None,
    ) -> None:
        self.folder = folder
        self.record_path = folder / record
        self.journal_path = folder / (record + JOURNAL_SUFFIX)
        self.planned = list(planned)
        self.required = list(planned if required is None else required)
        self.settings = settings
        self.done: dict[str, str] = {}  # name -> sha256 of verified or written files
        self.kept: list[str] = []  # names verified from an earlier run
        self.draft: dict[str, Any] | None = None
        self.complete = False
        self._started = False
        self._pending: Callable[[], None] | None = None
        self._claims: set[str] = set()
        self._journal_is_current = False
        self._begin(overwrite, family or (lambda name: False))

    @property
    def todo(self) -> list[str]:
        return [name for name in self.planned if name not in self.done]

    def _verified(self, hashes: dict[str, str]) -> dict[str, str]:
        return {n: h for n, h in hashes.items() if sha256_file(self.folder / n) == h}

    def _begin(self, overwrite: bool, family: Callable[[str], bool]) -> None:
        record = _read_json(self.record_path)
        if not isinstance(record, dict):
            record = {} if self.record_path.exists() else None  # unreadable: someone else's
        journal = _read_journal(self.journal_path)
        ours_journal = journal is not None and journal["settings"] == self.settings
        claims: set[str] = set(journal["claims"]) if journal and ours_journal else set()
        if record is not None:
            if record.get("settings_sha256") == self.settings and not overwrite:
                files = _named_files(record.get("files"))
                verified = self._verified(files)
                if len(verified) == len(files) and set(self.required) <= set(files):
                    self.done, self.kept, self.complete = verified, list(verified), True
                    self.journal_path.unlink(missing_ok=True)
                    return
                # ours but damaged (a file deleted or changed): keep what verifies, redo the rest
                self.draft = {k: v for k, v in record.items() if k not in ("files",)}
                claims |= set(files)
                self.done = verified
            elif not overwrite:
                raise OutputExistsError(
                    f"{str(self.record_path)!r} is a finished set made with other settings; "
                    "pass --overwrite to replace it or choose another --out (nothing was run)"
                )
        if journal is not None and not ours_journal and not overwrite:
            raise OutputExistsError(
                f"{str(self.journal_path)!r} is an unfinished set made with other settings; "
                "re-run that command to finish it, or pass --overwrite (nothing was run)"
            )
        if journal is not None and ours_journal:
            self.done.update(self._verified(journal["files"]))
            self.draft = journal["draft"] or self.draft
        if overwrite:
            self._pending = lambda: self._remove_old_set(record, journal, family)
            if not ours_journal:
                self.done, claims = {}, set()
        else:
            foreign = [n for n in self.planned if n not in claims and (self.folder / n).exists()]
            if foreign:
                raise OutputExistsError(
                    f"{str(self.folder / foreign[0])!r} exists; pass --overwrite or choose "
                    "another --out (nothing was run)"
                )
        self.kept = list(self.done)
        self._claims = claims
        self._journal_is_current = ours_journal and set(self.planned) <= claims

    def _start_writing(self) -> None:
        """Before the first write: remove an old set (``overwrite``), write the journal's
        header, remove a record that no longer matches. A run that fails before writing
        anything (a bad click found by the editor, a model that does not load) changes
        nothing on disk."""
        if self._started:
            return
        self._started = True
        if self._pending is not None:
            self._pending()
        if not self._journal_is_current:
            claims = sorted(self._claims | set(self.planned))
            lines = [json.dumps({"settings": self.settings, "claims": claims})]
            lines += [json.dumps({"file": n, "sha256": h}) for n, h in self.done.items()]
            if self.draft is not None:
                lines.append(json.dumps({"draft": self.draft}, default=str))
            write_bytes(self.journal_path, "".join(x + "\n" for x in lines).encode())
        # the journal now speaks for the set: a record that no longer matches it goes
        self.record_path.unlink(missing_ok=True)

    def _remove_old_set(
        self,
        record: dict[str, Any] | None,
        journal: dict[str, Any] | None,
        family: Callable[[str], bool],
    ) -> None:
        """With ``overwrite``: remove the old record first, then the old set's files that this
        set does not plan (named by its record or journal, or of this record's family)."""
        old: set[str] = set(journal["claims"]) if journal is not None else set()
        if record is not None:
            old |= set(_named_files(record.get("files")))
            outputs = record.get("outputs")
            if isinstance(outputs, list):
                old |= {str(n) for n in outputs}
        self.record_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            old |= {entry.name for entry in os.scandir(self.folder) if family(entry.name)}
        keep = {*self.planned, LOCK_NAME, self.journal_path.name}
        for name in sorted(n for n in old - keep if _safe_name(n)):
            with contextlib.suppress(IsADirectoryError, PermissionError):
                (self.folder / name).unlink(missing_ok=True)

    def write(self, name: str, data: bytes) -> Path:
        """Write one planned file atomically and note its hash in the journal."""
        if name not in self.planned:
            raise ValueError(f"{name!r} is not one of this set's planned files {self.planned}")
        path = self.folder / name
        digest = hashlib.sha256(data).hexdigest()
        # the hash first: a run killed before the rename finds no file (or an older one) that
        # does not match it and redoes it; killed after, the file is verified and kept
        self._start_writing()
        append_lines(self.journal_path, [json.dumps({"file": name, "sha256": digest})])
        write_bytes(path, data)
        self.done[name] = digest
        return path

    def save_draft(self, record: dict[str, Any]) -> None:
        """Keep the record body in the journal, so a resumed run that has nothing left to
        compute can still write the record."""
        self._start_writing()
        self.draft = record
        append_lines(self.journal_path, [json.dumps({"draft": record}, default=str)])

    def finish(self, record: dict[str, Any] | None = None) -> Path:
        """Write the record last (``record`` or the draft, plus ``files`` and
        ``settings_sha256``), then drop the journal. Returns the record's path."""
        body = record if record is not None else self.draft
        if body is None:
            raise ValueError("finish() needs a record: nothing was drafted")
        missing = [n for n in self.required if n not in self.done]
        if missing:
            raise ValueError(f"cannot finish: required files not written: {missing}")
        self._start_writing()
        full = {**body, "files": dict(self.done), "settings_sha256": self.settings}
        write_bytes(self.record_path, json.dumps(full, indent=2, default=str).encode())
        self.journal_path.unlink(missing_ok=True)
        self.complete = True
        return self.record_path


def _named_files(value: Any) -> dict[str, str]:
    """A record's ``files`` mapping (name -> sha256), keeping only plain file names."""
    if not isinstance(value, dict):
        return {}
    return {str(n): str(h) for n, h in value.items() if _safe_name(str(n))}


def _safe_name(name: str) -> bool:
    """A plain file name in the folder itself (record contents are not trusted as paths)."""
    return bool(name) and name not in (".", "..") and Path(name).name == name and "\\" not in name


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_journal(path: Path) -> dict[str, Any] | None:
    """{"settings", "claims", "files", "draft"} from a journal; torn lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    journal: dict[str, Any] | None = None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if journal is None:
            if isinstance(entry.get("settings"), str) and isinstance(entry.get("claims"), list):
                journal = {
                    "settings": entry["settings"],
                    "claims": [str(c) for c in entry["claims"]],
                    "files": {},
                    "draft": None,
                }
            continue
        if isinstance(entry.get("file"), str) and isinstance(entry.get("sha256"), str):
            journal["files"][entry["file"]] = entry["sha256"]
        elif isinstance(entry.get("draft"), dict):
            journal["draft"] = entry["draft"]
    return journal
