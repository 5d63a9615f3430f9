"""Ends the processes of a Ray cluster the driver started when the driver dies (Linux).

Ray starts a dashboard agent and a runtime-env agent beside every raylet whatever ``ray.init``
is told (``include_dashboard=False`` drops the dashboard's web modules, not the agents). When a
driver is killed with SIGKILL its GCS and raylet die with it (Ray's fate sharing), but the
agents, reparented to init, wait on checks that time out and linger for a minute or more.

The reaper is a small process started beside the cluster (its own session, so a signal to
the driver's process group leaves it alive). It keeps the list of the cluster's processes
(the driver's children that ``ray.init`` started and all their descendants, as (pid, start
time) so a reused pid is never hit), refreshed every ``POLL_S``; when the driver is gone, or
on SIGTERM (the driver's normal ``ray.shutdown`` is done), it SIGKILLs every listed process
still alive and every process whose parent was one of them, until none is left. Elsewhere
than Linux (no ``/proc``) it is not started.

Run as ``python reaper.py DRIVER_PID DRIVER_START PID:START ...`` (by path: no imports).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.2  # how often the process list is refreshed and the driver checked
REAP_S = 5.0  # how long it keeps killing stragglers (a worker forked during the kill)
PROC = Path("/proc")


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process, from ``/proc``."""
    table = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces and ')'
        table[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return table


def started_at(pid: int) -> int | None:
    """A live process's start time (clock ticks since boot); None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else int(fields[19])


def children(pid: int) -> dict[int, int]:
    """pid -> start time of ``pid``'s direct children."""
    return {p: start for p, (parent, start) in process_table().items() if parent == pid}


def _grow(known: dict[int, int], table: dict[int, tuple[int, int]]) -> dict[int, int]:
    """``known`` (pid -> start) still alive, plus every descendant of them in ``table``."""
    alive = {p: s for p, s in known.items() if table.get(p, (0, -1))[1] == s}
    grown = True
    while grown:
        grown = False
        for pid, (parent, start) in table.items():
            if parent in alive and pid not in alive:
                alive[pid] = start
                grown = True
    return alive


def reap(driver: int, driver_start: int, roots: dict[int, int]) -> None:
    """Track ``roots`` and their descendants while ``driver`` lives; then kill them all."""
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    tracked = dict(roots)
    while not stop and started_at(driver) == driver_start:
        tracked = _grow(tracked, process_table())
        time.sleep(POLL_S)
    deadline = time.monotonic() + REAP_S
    while time.monotonic() < deadline:
        tracked = _grow(tracked, process_table())
        if not tracked:
            return
        for pid in tracked:
            with contextlib.suppress(OSError):  # ended meanwhile
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def start_reaper(roots: dict[int, int]) -> subprocess.Popen[bytes] | None:
    """Start the reaper for this process's cluster processes ``roots`` (pid -> start time);
    None where there is no ``/proc``."""
    me = started_at(os.getpid())
    if me is None or not roots:
        return None
    args = [str(os.getpid()), str(me), *(f"{pid}:{start}" for pid, start in roots.items())]
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), *args],  # by path: no package import
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_reaper(reaper: subprocess.Popen[bytes] | None) -> None:
    """After ``ray.shutdown``: the reaper kills what shutdown left, then exits."""
    if reaper is None:
        return
    reaper.terminate()
    try:
        reaper.wait(timeout=REAP_S + 2)
    except subprocess.TimeoutExpired:
        reaper.kill()


if __name__ == "__main__":
    driver_pid, driver_started = int(sys.argv[1]), int(sys.argv[2])
    pairs = (arg.split(":") for arg in sys.argv[3:])
    reap(driver_pid, driver_started, {int(pid): int(start) for pid, start in pairs})
