"""The app's work under many users, on plain values: run admission, stopping, progress, files.

Nothing here touches Gradio, so the rules are tested without a server. Sessions are named by
an id (the browser session's ``session_hash``). Gradio's queue orders the work (one edit at a
time per device, masks in their own group); this module adds what the queue does not know:

- :class:`Runs`: a per-session cap on queued runs (refused at the click, before queueing), and
  the stop flag of every run, set by the Stop button or when the tab closes;
- :class:`StepWatch`: a step callback that reports progress (step, total, an estimate) and ends
  the run within one step once its flag is set (``EditStopped``);
- :class:`Workspace`: each session's files in its own folder, deleted when the session ends or
  after a given age.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pnpsam.core.callbacks import EditStopped, StepTensors
from pnpsam.errors import InputError

STOPPED = (
    "stopped by the user"  # EditStopped's reason when the Stop button or a closed tab ends a run
)


class TooManyRuns(InputError):
    """A session asked for more queued runs than the server allows."""


@dataclass
class _SessionRuns:
    waiting: set[str] = field(default_factory=set)  # tickets of admitted runs not started
    dropped: set[str] = field(default_factory=set)  # tickets a Stop dropped while waiting
    flags: set[threading.Event] = field(default_factory=set)  # one per running run


class Runs:
    """Admission and stop flags of each session's runs (thread-safe).

    ``cap``: most runs a session may have waiting or running at once (>= 1). A click first
    :meth:`admit`\\ s a run, which gives it a ticket (counted as waiting); the queued handler
    then runs it inside :meth:`running` with that ticket, which gives its stop flag.
    :meth:`stop` sets the flags of the session's running runs and drops its waiting ones:
    Gradio's ``cancels`` takes them off the queue, and one that starts all the same starts
    with its flag set.
    """

    def __init__(self, cap: int = 2) -> None:
        if cap < 1:
            raise InputError(f"the queued-run cap must be >= 1; got {cap}")
        self.cap = cap
        self._lock = threading.Lock()
        self._sessions: dict[str, _SessionRuns] = {}

    def admit(self, session: str) -> str:
        """A ticket for one more run of ``session``, or :class:`TooManyRuns` at the cap."""
        with self._lock:
            runs = self._sessions.setdefault(session, _SessionRuns())
            active = len(runs.waiting) + len(runs.flags)
            if active >= self.cap:
                raise TooManyRuns(
                    f"you have {active} runs queued or running, the most this server allows "
                    f"per session ({self.cap}); wait for one or press Stop"
                )
            ticket = uuid.uuid4().hex
            runs.waiting.add(ticket)
            return ticket

    @contextmanager
    def running(self, session: str, ticket: str | None = None) -> Iterator[threading.Event]:
        """The stop flag of one run of ``session`` while it runs; ``ticket``: its admission
        (None: a run not admitted, e.g. from the API). The flag is set from the start when a
        Stop dropped the ticket while it waited."""
        flag = threading.Event()
        with self._lock:
            runs = self._sessions.setdefault(session, _SessionRuns())
            if ticket is not None:
                runs.waiting.discard(ticket)
                if ticket in runs.dropped:
                    runs.dropped.discard(ticket)
                    flag.set()
            runs.flags.add(flag)
        try:
            yield flag
        finally:
            with self._lock:
                runs.flags.discard(flag)

    def stop(self, session: str) -> int:
        """Stop ``session``'s running runs and drop its waiting ones; the number running."""
        with self._lock:
            runs = self._sessions.get(session)
            if runs is None:
                return 0
            for flag in runs.flags:
                flag.set()
            # tickets the queue took off never run: keep only the latest Stop's
            runs.dropped, runs.waiting = runs.waiting, set()
            return len(runs.flags)

    def end(self, session: str) -> None:
        """The session ended (tab closed): stop its runs and forget it."""
        self.stop(session)
        with self._lock:
            runs = self._sessions.get(session)
            if runs is not None and not runs.flags:
                del self._sessions[session]

    def active(self, session: str) -> int:
        """Runs of ``session`` waiting or running."""
        with self._lock:
            runs = self._sessions.get(session)
            return 0 if runs is None else len(runs.waiting) + len(runs.flags)


Report = Callable[[int, int, str], None]
"""``report(done, total, description)``: progress of a run (e.g. Gradio's ``gr.Progress``)."""


@dataclass
class StepWatch:
    """A step callback for one phase of a run (inversion or sampling): reports ``done/total``
    steps with an estimate of the time left, and raises ``EditStopped`` after the step during
    which ``flag`` was set. ``total``: the steps of the phase (a sampler may run its steps once
    per prompt chunk: the count wraps, the estimate stays per phase)."""

    phase: str
    total: int
    flag: threading.Event
    report: Report | None = None
    _started: float = field(default_factory=time.perf_counter)
    _calls: int = 0

    def __call__(self, step: int, timestep: int, tensors: StepTensors) -> None:
        if self.flag.is_set():
            raise EditStopped(STOPPED)
        self._calls += 1
        if self.report is not None:
            done = min(step + 1, self.total)
            per_step = (time.perf_counter() - self._started) / self._calls
            left = per_step * (self.total - done)
            self.report(
                done, self.total, f"{self.phase}: step {done}/{self.total}, ~{left:.0f} s left"
            )


def settings_digest(settings: Mapping[str, Any]) -> str:
    """A short digest (8 hex digits) of a run's settings (a JSON-able mapping): two runs with
    the same digest ran the same settings."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_name(photo_stem: str, when: float, settings: Mapping[str, Any]) -> str:
    """A run's file-name stem: ``{photo stem}_{YYYYmmdd-HHMMSS}_{settings digest}``."""
    stamp = datetime.fromtimestamp(when).strftime("%Y%m%d-%H%M%S")
    return f"{photo_stem}_{stamp}_{settings_digest(settings)}"


class Workspace:
    """Each session's files under ``root/<session id>/``: runs' PNGs and zips.

    ``keep_s``: age in seconds after which :meth:`sweep` deletes a run's folder (None: kept
    until the session ends). :meth:`end` deletes a session's folder.
    """

    def __init__(self, root: Path, keep_s: float | None = None) -> None:
        self.root = root
        self.keep_s = keep_s
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._adopted: dict[str, set[Path]] = {}

    def session_dir(self, session: str) -> Path:
        if not session or "/" in session or session.startswith("."):
            raise InputError(f"bad session id {session!r}")
        return self.root / session

    def run_dir(self, session: str, name: str) -> Path:
        """A new, empty folder for one run of ``session``."""
        folder = self.session_dir(session) / name
        suffix = 1
        while folder.exists():  # two runs in one second with the same settings
            suffix += 1
            folder = self.session_dir(session) / f"{name}-{suffix}"
        folder.mkdir(parents=True)
        return folder

    def adopt(self, session: str, path: Path) -> None:
        """Delete ``path`` (a file ``session`` uploaded, in the server's upload folder) with the
        session's own files."""
        with self._lock:
            self._adopted.setdefault(session, set()).add(path)

    def remove(self, folder: Path) -> None:
        """Delete one run's folder."""
        shutil.rmtree(folder, ignore_errors=True)

    def end(self, session: str) -> None:
        """Delete ``session``'s files and the uploads it adopted."""
        shutil.rmtree(self.session_dir(session), ignore_errors=True)
        with self._lock:
            adopted = self._adopted.pop(session, set())
            # Gradio keeps one copy of identical uploads: another session may still use it
            adopted -= set().union(*self._adopted.values())
        for path in adopted:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # Gradio keeps each upload in a folder of its own
                path.parent.rmdir()

    def sweep(self, now: float | None = None) -> list[Path]:
        """Delete run folders older than ``keep_s`` (and session folders left empty); the run
        folders deleted."""
        if self.keep_s is None:
            return []
        now = time.time() if now is None else now
        gone = []
        for session in self.root.iterdir() if self.root.exists() else ():
            if not session.is_dir():
                continue
            for run in list(session.iterdir()):
                if now - run.stat().st_mtime > self.keep_s:
                    shutil.rmtree(run, ignore_errors=True)
                    gone.append(run)
            if not any(session.iterdir()):
                session.rmdir()
        return gone

    def size(self) -> int:
        """Bytes of every file under the root."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
