"""Device policy: what to do when the accelerator runs out of memory during an edit.

The algorithm (``pnpsam.core``) runs a batch of prompts and lets ``torch.OutOfMemoryError``
through; this policy decides to retry. ``HalveOnOutOfMemory`` is a ``ChunkRunner`` (see
``pnpsam.core.pipeline``): it runs the prompts ``chunk`` at a time and, when a chunk does not
fit, halves the chunk and retries it, down to one prompt per batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pnpsam.errors import UserError


class OutOfMemoryError(UserError, RuntimeError):
    """The accelerator ran out of memory even at one prompt per batch."""


@dataclass(frozen=True)
class HalveOnOutOfMemory:
    """Run prompt chunks; on out-of-memory halve the chunk and retry it (then warn)."""

    advice: str = "try model.dtype fp16, model.cpu_offload or a smaller preprocess.size"

    def __call__(
        self, num_prompts: int, chunk: int, sample: Callable[[slice], torch.Tensor]
    ) -> list[torch.Tensor]:
        results: list[torch.Tensor] = []
        done = 0
        while done < num_prompts:
            rows = slice(done, min(done + chunk, num_prompts))
            try:
                results.append(sample(rows))
            except torch.OutOfMemoryError as err:
                if chunk == 1:
                    raise OutOfMemoryError(
                        f"out of accelerator memory even with one prompt per batch; {self.advice}"
                    ) from err
                chunk = max(1, chunk // 2)
                warnings.warn(
                    f"out of memory: retrying with {chunk} prompt(s) per batch", stacklevel=3
                )
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            done = rows.stop
        return results
