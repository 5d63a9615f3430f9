"""``pnpsam batch``: edit many photos, resumably, in-process or on Ray.

Python use::

    from pnpsam.batch import BatchRunner, LocalEngine, load_jobs
    jobs = load_jobs("photos/", ["a photo of a robot"])
    summary = BatchRunner("out", config).run(jobs, LocalEngine())

``RayEngine`` (``pnpsam.engines.ray``, needs ``pnpsam[ray]``) runs the same
:func:`edit_photo` in a Ray actor pool; both engines write byte-identical outputs.
"""

from typing import TYPE_CHECKING

from pnpsam.lazy import lazy_exports

if TYPE_CHECKING:
    from pnpsam.batch.jobs import BatchInputError, PhotoJob, load_jobs
    from pnpsam.batch.photo import PhotoResult, PhotoWork, edit_photo
    from pnpsam.batch.runner import BatchAbortedError, BatchRunner, BatchSummary, read_index
    from pnpsam.engines.local import Engine, LocalEngine, Work

# photo and runner need torch: everything is imported on first use (`pnpsam --help` stays fast)
__getattr__ = lazy_exports(
    __name__,
    {
        "pnpsam.batch.jobs": ("BatchInputError", "PhotoJob", "load_jobs"),
        "pnpsam.engines.local": ("Engine", "LocalEngine", "Work"),
        "pnpsam.batch.photo": ("PhotoResult", "PhotoWork", "edit_photo"),
        "pnpsam.batch.runner": ("BatchAbortedError", "BatchRunner", "BatchSummary", "read_index"),
    },
)

__all__ = [
    "BatchAbortedError",
    "BatchInputError",
    "BatchRunner",
    "BatchSummary",
    "Engine",
    "LocalEngine",
    "PhotoJob",
    "PhotoResult",
    "PhotoWork",
    "Work",
    "edit_photo",
    "load_jobs",
    "read_index",
]
