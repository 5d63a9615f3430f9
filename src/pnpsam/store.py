"""Inversions kept for reuse: an in-memory store, bounded, keyed by what an inversion depends on.

A DDIM inversion depends only on the inverted pixels (which already carry the preprocessing,
the background weakening and the subject mask that weakening used), the model (id, revision,
resolved weights, dtype, device), the inversion settings and the sampling grid it is read at.
``InversionKey`` digests exactly those; two edits with the same key can share one inversion.
The store is the seam for the on-disk cache and the web app: they look up and add by key.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from pnpsam.config import ConfigError, InversionConfig, PreprocessConfig

T = TypeVar("T")


@dataclass(frozen=True)
class InversionKey:
    """What an inversion depends on; ``digest`` is a stable hex id of it (same on any machine).

    ``image_sha256``: digest of the inverted pixels (after preprocessing and weakening);
    ``model``: id, revision, resolved path/commit, dtype and device of the weights;
    ``timesteps``: the sampling grid the inverted latents are kept at.
    """

    image_sha256: str
    preprocess: Mapping[str, Any]
    inversion: Mapping[str, Any]
    model: Mapping[str, Any]
    timesteps: tuple[int, ...]

    @classmethod
    def of(
        cls,
        image_sha256: str,
        preprocess: PreprocessConfig,
        inversion: InversionConfig,
        model: Mapping[str, Any],
        timesteps: Sequence[int],
    ) -> InversionKey:
        return cls(
            image_sha256,
            _plain(preprocess.__dict__),
            _plain(inversion.__dict__),
            _plain(model),
            tuple(int(t) for t in timesteps),
        )

    def describe(self) -> dict[str, Any]:
        """JSON-ready statement of the key (what a cache header records)."""
        return {
            "image_sha256": self.image_sha256,
            "preprocess": dict(self.preprocess),
            "inversion": dict(self.inversion),
            "model": dict(self.model),
            "timesteps": list(self.timesteps),
        }

    @property
    def digest(self) -> str:
        text = json.dumps(self.describe(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-stable copy: tuples as lists, so equal settings always digest alike."""
    return json.loads(json.dumps(dict(mapping), default=str))


def tensor_bytes(value: Any) -> int:
    """Bytes held by the tensors inside ``value`` (dataclasses, dicts, lists, tensors)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(tensor_bytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(tensor_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


class InversionStore(Generic[T]):
    """Least-recently-used store of inversions by ``InversionKey.digest``, in memory.

    Bounded by ``max_items`` and by ``max_bytes`` of tensors (``size_of``, default:
    ``tensor_bytes``); adding past either bound evicts the least recently used entries. An entry
    larger than ``max_bytes`` on its own is not kept. ``max_items=0`` disables the store.
    """

    def __init__(
        self,
        max_items: int = 8,
        max_bytes: int = 2 * 1024**3,
        size_of: Callable[[T], int] = tensor_bytes,
    ) -> None:
        if max_items < 0 or max_bytes < 0:
            raise ConfigError(
                f"store bounds must be >= 0; got max_items={max_items}, max_bytes={max_bytes}"
            )
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size_of = size_of
        self._entries: OrderedDict[str, tuple[T, int]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: InversionKey) -> T | None:
        entry = self._entries.get(key.digest)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key.digest)
        self.hits += 1
        return entry[0]

    def put(self, key: InversionKey, value: T) -> None:
        size = self._size_of(value)
        self._entries.pop(key.digest, None)
        if self.max_items == 0 or size > self.max_bytes:
            return
        self._entries[key.digest] = (value, size)
        while len(self._entries) > self.max_items or self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    def __contains__(self, key: InversionKey) -> bool:
        return key.digest in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Tensor bytes held by all entries."""
        return sum(size for _, size in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()
