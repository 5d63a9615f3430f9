"""The Ray engine: Ray Data ``map_batches`` over an actor pool, one model per actor.

Each actor (a callable class) loads the model once; the pool has ``workers`` actors with
``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs each. Tasks go out as JSON text, results
come back to the driver as bytes, as they complete; the driver writes them (atomically), so a
killed run resumes exactly as with the local engine. An actor that dies is restarted by Ray
and its task retried (Ray Data's defaults for actor pools), so every task yields one result.

Ray is an optional extra: ``pip install pnpsam[ray]``. ``address`` joins an existing cluster
(``"auto"`` or ``ray://host:10001``); by default a local Ray is started for the run and shut
down after it. A Ray already initialised by the caller is used as it is and left running.

The local Ray runs without the dashboard; Ray still starts a dashboard agent and a runtime-env
agent beside its raylet, which outlive a driver killed with SIGKILL by a minute or more, so a
reaper process (:mod:`pnpsam.engines.reaper`) ends every process of that cluster when the driver
dies. Actors run torch with the work's thread count (``PhotoWork.threads``: the driver's), not
their CPU share, so both engines write the same bytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pnpsam.config import ConfigError, check_limit
from pnpsam.engines.local import ResultT, TaskT, Work
from pnpsam.engines.reaper import children, start_reaper, stop_reaper

INSTALL_HINT = "pip install pnpsam[ray]"


class RayUnavailableError(ConfigError):
    """``--engine ray`` without Ray installed."""


def import_ray() -> Any:
    """``ray`` and ``ray.data``, or a one-line error saying how to install them."""
    try:
        import ray
        import ray.data  # ray without its data extra lacks ray.data's dependencies
    except ImportError as error:
        raise RayUnavailableError(
            f"the Ray engine needs Ray Data, which is not installed ({error}): {INSTALL_HINT}"
        ) from None
    return ray


class _Actor:
    """One Ray actor: sets up the work (loads the model) once, then runs batches of tasks."""

    def __init__(self, work: Work[Any, Any], threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)  # the CPUs Ray reserved for this actor
        self.work = work
        self.setup_error: str | None = None
        try:
            work.setup()
        except Exception as error:  # reported per task, so the driver can stop with it
            self.setup_error = f"worker could not start: {type(error).__name__}: {error}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = []
        for text in batch["task"]:
            task = self.work.decode_task(str(text))
            if self.setup_error is not None:
                result = self.work.failed(task, self.setup_error)
            else:
                result = self.work(task)
            results.append(self.work.encode_result(result))
        out = np.empty(len(results), dtype=object)
        out[:] = results
        return {"result": out}


class RayEngine:
    """Ray Data over an actor pool; see the module docstring.

    ``workers`` None: as many actors as the cluster's GPUs (with ``gpus_per_worker``) or CPUs
    allow, given the per-worker shares.
    """

    name = "ray"

    def __init__(
        self,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
        cpus_per_worker: float = 1.0,
        address: str | None = None,
    ) -> None:
        if workers is not None:
            check_limit("workers", workers)
        if gpus_per_worker < 0 or cpus_per_worker <= 0:
            raise ConfigError(
                "gpus-per-worker must be >= 0 and cpus-per-worker > 0; got "
                f"{gpus_per_worker} and {cpus_per_worker}"
            )
        self.workers = workers
        self.gpus_per_worker = gpus_per_worker
        self.cpus_per_worker = cpus_per_worker
        self.address = address
        self.ray = import_ray()  # fail before any model is loaded

    def pool_size(self) -> int:
        if self.workers is not None:
            return self.workers
        resources = self.ray.cluster_resources()
        if self.gpus_per_worker > 0:
            return max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // self.cpus_per_worker))

    def run(self, work: Work[TaskT, ResultT], tasks: Sequence[TaskT]) -> Iterator[ResultT]:
        if not tasks:
            return
        ray = self.ray
        started_here = not ray.is_initialized()
        reaper = None
        if started_here:
            before = children(os.getpid())
            ray.init(
                # "local": a Ray of our own, never one found running on this machine
                address=self.address or "local",
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,  # the driver's bar and summary are the run's output
            )
            if self.address is None:  # a local cluster: its processes end with this driver
                started = children(os.getpid())
                reaper = start_reaper({p: s for p, s in started.items() if p not in before})
        # Ray Data logs each execution at INFO; the driver's bar and summary say enough
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False
            size = min(self.pool_size(), len(tasks))
            items = [{"task": work.encode_task(task)} for task in tasks]
            # one task per block: the pool takes them one by one, the slowest photo holds
            # back nothing else
            dataset = ray.data.from_items(items, override_num_blocks=len(items))
            mapped = dataset.map_batches(
                _Actor,
                fn_constructor_kwargs={
                    "work": work,
                    "threads": None if self.gpus_per_worker else int(self.cpus_per_worker) or 1,
                },
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=size),
                num_cpus=self.cpus_per_worker,
                num_gpus=self.gpus_per_worker or None,
            )
            for row in mapped.iter_rows():
                yield work.decode_result(bytes(row["result"]))
        finally:
            if started_here:
                ray.shutdown()
                stop_reaper(reaper)
