"""How many CPU threads torch may use: from the cores that are actually free, applied once.

On a CPU shared with other work, torch's default (one intra-op thread per core, OpenMP threads
that spin while waiting) costs far more CPU per edit: every parallel op splits into one chunk
per core, a chunk whose thread is descheduled holds the others at the barrier, and the waiting
threads spin on cores the other jobs need. ``benchmarks/busy_cpu.py`` measures it. The policy:

- ``PNPSAM_THREADS=N`` uses N threads; ``PNPSAM_THREADS=torch`` leaves torch's own default;
  an ``OMP_NUM_THREADS`` the user set is respected as it is;
- otherwise (``auto``) the count is the cores this process may run on
  (``os.sched_getaffinity``) minus the other runnable tasks (``/proc/loadavg``'s running count,
  sampled a few times; else the 1-minute load average), at least 1;
- where other tasks take cores, OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``, unless
  set): a waiting thread sleeps instead of spinning (on idle cores it spins, which is faster).
  It only takes effect when set before torch starts its thread pool, so
  :func:`apply_thread_policy` runs first thing in every command (edit, batch, demo, bench, app).

Pure standard library: importing this module does not import torch.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from pnpsam.errors import InputError

THREADS_ENV = "PNPSAM_THREADS"
"""``auto`` (default), a thread count, or ``torch`` (torch's own default: one per core)."""
LOADAVG = Path("/proc/loadavg")
RUNNABLE_SAMPLES = 5  # /proc/loadavg's running count is instantaneous: a median of a few
SAMPLE_GAP_S = 0.01


@dataclass(frozen=True)
class ThreadPlan:
    """``threads``: intra-op threads for torch (None: leave torch's default); ``reason``: why,
    in words (printed by the benchmark, kept in records)."""

    threads: int | None
    reason: str


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def other_runnable(loadavg: Path = LOADAVG) -> float:
    """Tasks other than this one that want a core now: the median over a few samples of
    ``/proc/loadavg``'s running count minus this process; the 1-minute load average where that
    file does not exist."""
    counts = []
    for index in range(RUNNABLE_SAMPLES):
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            try:
                return os.getloadavg()[0]
            except OSError:
                return 0.0
        counts.append(running - 1)  # the reading process itself is running
        if index + 1 < RUNNABLE_SAMPLES:
            time.sleep(SAMPLE_GAP_S)
    return max(0.0, statistics.median(counts))


def plan_threads(
    environ: MutableMapping[str, str] | None = None, loadavg: Path = LOADAVG
) -> ThreadPlan:
    """The thread count the policy picks now (see the module docstring)."""
    env = os.environ if environ is None else environ
    setting = env.get(THREADS_ENV, "auto").strip().lower() or "auto"
    if setting == "torch":
        return ThreadPlan(None, f"{THREADS_ENV}=torch: torch's default")
    if setting != "auto":
        try:
            count = int(setting)
        except ValueError:
            count = 0
        if count < 1:
            raise InputError(
                f"{THREADS_ENV} must be 'auto', 'torch' or a thread count >= 1; got {setting!r}"
            )
        return ThreadPlan(count, f"{THREADS_ENV}={count}")
    if env.get("OMP_NUM_THREADS", "").strip():
        return ThreadPlan(None, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS'].strip()} (yours)")
    cores = usable_cores()
    busy = other_runnable(loadavg)
    free = max(1, min(cores, int(cores - busy + 0.5)))
    return ThreadPlan(free, f"{cores} usable cores, {busy:g} other runnable tasks")


def apply_thread_policy(environ: MutableMapping[str, str] | None = None) -> ThreadPlan:
    """Pick the thread count and apply it: ``OMP_WAIT_POLICY=PASSIVE`` (unless set) while torch
    is not yet imported, then ``torch.set_num_threads``. Returns the plan."""
    env = os.environ if environ is None else environ
    plan = plan_threads(env)
    # passive waiting only where cores are taken by others: on idle cores a sleeping OpenMP
    # thread wakes too late for the tiny per-op work of small models (toy demo: 69 s passive
    # against 49 s spinning for 12 edits on 2 idle cores)
    crowded = plan.threads is not None and plan.threads < usable_cores()
    if crowded and "torch" not in sys.modules:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when OpenMP starts
    if plan.threads is not None:
        import torch

        torch.set_num_threads(plan.threads)
    return plan


def replay_thread_note(recorded: object, current: int) -> str | None:
    """A one-line note when a record made with ``recorded`` torch threads (its
    ``torch_threads``) is replayed with ``current``: on a CPU the sums inside torch's kernels
    split by thread, so the pixels may differ in the last bits. None when they match or the
    record predates the field."""
    if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded == current:
        return None
    return (
        f"note: the record was made with {recorded} torch thread(s), this run uses {current}; "
        f"on a CPU the pixels may differ in the last bits ({THREADS_ENV}={recorded} repeats "
        "them exactly)"
    )
