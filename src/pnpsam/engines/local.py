"""The engines' contract (:class:`Work`) and the local engine: in-process, the model loaded once.

An engine takes a :class:`Work` (picklable before its ``setup``: configs only) and a list of
tasks, and yields one result per task, in completion order. It writes nothing: the driver
writes each result as it arrives, so writes stay atomic and a run stays resumable whatever
the engine. ``pnpsam batch`` runs :class:`~pnpsam.batch.photo.PhotoWork` on it, ``pnpsam
bench`` :class:`~pnpsam.bench.work.BenchWork`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TypeVar

TaskT = TypeVar("TaskT")
ResultT = TypeVar("ResultT")


class Work(Protocol[TaskT, ResultT]):
    """One kind of work the engines run.

    ``setup`` loads what every task needs (the model), once per process; ``__call__`` runs one
    task and reports a failure of that task in its result, never by raising. The ``encode``/
    ``decode`` pairs carry tasks (JSON text) and results (bytes) between processes, so no
    pickled object ever crosses a worker boundary except the work itself.
    """

    def setup(self) -> None: ...

    def __call__(self, task: TaskT, /) -> ResultT: ...

    def failed(self, task: TaskT, reason: str, /) -> ResultT:
        """The result of ``task`` when the worker itself could not start (``setup`` failed)."""
        ...

    def encode_task(self, task: TaskT, /) -> str: ...

    def decode_task(self, text: str, /) -> TaskT: ...

    def encode_result(self, result: ResultT, /) -> bytes: ...

    def decode_result(self, blob: bytes, /) -> ResultT: ...


class Engine(Protocol):
    """Runs a :class:`Work` over tasks; yields results as they complete."""

    name: str

    def run(self, work: Work[Any, Any], tasks: Sequence[Any]) -> Iterator[Any]: ...


class LocalEngine:
    """In-process: ``work.setup()`` once (a setup error propagates), then task by task."""

    name = "local"

    def run(self, work: Work[TaskT, ResultT], tasks: Sequence[TaskT]) -> Iterator[ResultT]:
        if not tasks:
            return
        work.setup()
        for task in tasks:
            yield work(task)
