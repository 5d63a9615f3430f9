"""Engines that run one kind of work over many tasks (the floor under the front ends).

``pnpsam batch`` (photos) and ``pnpsam bench`` (method x item pairs) both hand their work to an
engine: :class:`LocalEngine` in-process, or ``pnpsam.engines.ray.RayEngine`` on a Ray actor
pool (needs ``pnpsam[ray]``). The contract (:class:`Work`, :class:`Engine`) is in
:mod:`pnpsam.engines.local`.
"""

from pnpsam.engines.local import Engine, LocalEngine, Work

__all__ = ["Engine", "LocalEngine", "Work"]
