"""Inversions kept for reuse: an in-memory store, bounded, keyed by what an inversion depends on.

A DDIM inversion depends only on the inverted pixels (which already carry the preprocessing,
the background weakening and the subject mask that weakening used), the model (id, revision,
resolved weights, dtype, device), the inversion settings and the sampling grid it is read at.
``InversionKey`` digests exactly those; two edits with the same key can share one inversion.
``InversionStore`` keeps recent ones in memory; ``InversionCache`` keeps their latents on disk
(safetensors, never pickle) so that another process skips the inversion too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pnpsam.config import ConfigError, InversionConfig, PreprocessConfig, fingerprint
from pnpsam.imageio import atomic_write

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
        return _digest(self.describe())


@dataclass(frozen=True)
class FeaturesKey:
    """What the source stream's features depend on: the inversion, the grid read, the mode.

    ``timesteps``: the sampling grid of the edit; ``source``: ``PnPConfig.source``. Sites and
    thresholds are not part of it: ``SourceFeatures.covers`` checks an edit's needs.
    """

    inversion: InversionKey
    timesteps: tuple[int, ...]
    source: str

    def describe(self) -> dict[str, Any]:
        return {
            "inversion": self.inversion.describe(),
            "timesteps": list(self.timesteps),
            "source": self.source,
        }

    @property
    def digest(self) -> str:
        return _digest(self.describe())


class Keyed(Protocol):
    """A store key: anything with a stable hex ``digest``."""

    @property
    def digest(self) -> str: ...


def _digest(description: Mapping[str, Any]) -> str:
    return fingerprint(description, compact=True)  # compact: as the caches on disk are named


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
    """Least-recently-used store of inversions (or their source features) by key digest.

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

    def get(self, key: Keyed) -> T | None:
        entry = self._entries.get(key.digest)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key.digest)
        self.hits += 1
        return entry[0]

    def put(self, key: Keyed, value: T) -> None:
        size = self._size_of(value)
        self._entries.pop(key.digest, None)
        if self.max_items == 0 or size > self.max_bytes:
            return
        self._entries[key.digest] = (value, size)
        while len(self._entries) > self.max_items or self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)

    def discard(self, key: Keyed) -> None:
        self._entries.pop(key.digest, None)

    def __contains__(self, key: Keyed) -> bool:
        return key.digest in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Tensor bytes held by all entries."""
        return sum(size for _, size in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()


class CacheWarning(UserWarning):
    """An on-disk cache entry was unusable (it is recomputed and replaced) or not written."""


class _BadEntry(Exception):
    """Why a cache file cannot be used (internal: turned into a ``CacheWarning``)."""


@dataclass(frozen=True)
class CachedLatents:
    """The tensors of one cached inversion, checked against the key (CPU tensors).

    ``clean``: (1, C, h, w) latent of the inverted image; ``by_timestep``: timestep -> (1, C, h,
    w) inverted x_t at every timestep of the key's sampling grid.
    """

    clean: torch.Tensor
    by_timestep: dict[int, torch.Tensor]
    inversion_steps: int


class InversionCache:
    """Inversions on disk: one safetensors file per ``InversionKey`` digest in ``directory``.

    >>> editor = PnPEditor.from_pretrained(model, cache_dir="~/.cache/pnpsam")  # or:
    >>> editor.cache = InversionCache("~/.cache/pnpsam")

    A file ``<digest>.safetensors`` holds ``clean`` and ``x_t/<timestep>`` tensors in the model's
    dtype, and a JSON header in the safetensors metadata (``"pnpsam"``) stating the format, the
    whole key (``InversionKey.describe()``), the inversion steps, each tensor's shape and dtype,
    and a SHA-256 of the tensor bytes. Reading checks all of it: a truncated, corrupted or
    mismatched file (size, header, key, dtype, shape, data digest) gives a ``CacheWarning`` and
    a miss — the caller recomputes and ``put`` replaces the file; it is never used silently.
    Writes go to a temporary file renamed into place, so readers and concurrent writers of one
    key only ever see whole files (the last rename wins; every candidate is valid). A failed
    write (read-only folder, disk full) warns and is otherwise ignored: the cache only saves
    time. Source features are never written (hundreds of MB per photo at 512 px).
    """

    FORMAT = "pnpsam-inversion/1"
    SUFFIX = ".safetensors"
    STALE_SECONDS = 3600.0  # temporaries older than this were left by a killed writer

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).expanduser()
        if self.directory.exists() and not self.directory.is_dir():
            raise ConfigError(f"cache directory {str(self.directory)!r} is not a folder")
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # unusable entries seen (each also warned)
        self._remove_stale_temporaries()

    def path(self, key: InversionKey) -> Path:
        return self.directory / f"{key.digest}{self.SUFFIX}"

    def get(
        self, key: InversionKey, shape: Sequence[int], dtype: torch.dtype
    ) -> CachedLatents | None:
        """The cached latents of ``key`` if a valid entry exists, else None (warned if bad).

        ``shape`` (1, C, h, w) and ``dtype`` are what the loaded model produces for this key.
        """
        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            found = self._read(path, key, tuple(int(n) for n in shape), dtype)
        except _BadEntry as bad:
            self.misses += 1
            self.rejected += 1
            warnings.warn(
                f"inversion cache entry {path} is unusable ({bad}); recomputing and replacing it",
                CacheWarning,
                stacklevel=2,
            )
            return None
        self.hits += 1
        return found

    def put(
        self,
        key: InversionKey,
        clean: torch.Tensor,
        by_timestep: Mapping[int, torch.Tensor],
        inversion_steps: int,
    ) -> None:
        """Write (or replace) the entry of ``key`` atomically; failures only warn."""
        tensors = {"clean": clean, **{f"x_t/{int(t)}": x for t, x in by_timestep.items()}}
        tensors = {name: x.detach().to("cpu").contiguous() for name, x in tensors.items()}
        header = {
            "format": self.FORMAT,
            "key": key.describe(),
            "digest": key.digest,
            "inversion_steps": int(inversion_steps),
            "tensors": {n: [str(x.dtype), list(x.shape)] for n, x in sorted(tensors.items())},
            "data_sha256": _data_digest(tensors),
        }
        metadata = {"pnpsam": json.dumps(header, sort_keys=True, default=str)}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path(key), lambda tmp: save_file(tensors, str(tmp), metadata))
        except OSError as err:
            warnings.warn(
                f"could not write inversion cache entry in {str(self.directory)!r}: {err}",
                CacheWarning,
                stacklevel=2,
            )

    # -- checks --------------------------------------------------------------------------
    def _read(
        self, path: Path, key: InversionKey, shape: tuple[int, ...], dtype: torch.dtype
    ) -> CachedLatents:
        try:
            with safe_open(str(path), framework="pt") as file:
                metadata = file.metadata() or {}
                tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
        except Exception as err:  # safetensors raises its own error type for bad files
            raise _BadEntry(f"not a readable safetensors file: {err}") from None
        try:
            header = json.loads(metadata["pnpsam"])
            if not isinstance(header, dict):
                raise ValueError("not an object")
        except (KeyError, ValueError) as err:
            raise _BadEntry(f"no valid pnpsam header: {err}") from None
        if header.get("format") != self.FORMAT:
            raise _BadEntry(f"format {header.get('format')!r}, expected {self.FORMAT!r}")
        if header.get("digest") != key.digest or header.get("key") != _plain(key.describe()):
            raise _BadEntry("its header states another key")
        expected = {"clean"} | {f"x_t/{t}" for t in key.timesteps}
        if set(tensors) != expected:
            missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
            raise _BadEntry(f"tensors missing {missing[:3]}, unexpected {extra[:3]}")
        for name, tensor in tensors.items():
            if tensor.dtype != dtype:
                raise _BadEntry(f"{name} is {tensor.dtype}, the model makes {dtype}")
            if tuple(tensor.shape) != shape:
                raise _BadEntry(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        if header.get("data_sha256") != _data_digest(tensors):
            raise _BadEntry("tensor data does not match the digest in its header (corrupted)")
        steps = header.get("inversion_steps")
        if not isinstance(steps, int):
            raise _BadEntry(f"inversion_steps {steps!r} is not an integer")
        by_timestep = {t: tensors[f"x_t/{t}"] for t in key.timesteps}
        return CachedLatents(tensors["clean"], by_timestep, steps)

    def _remove_stale_temporaries(self) -> None:
        """Delete temporaries (``.<name>.XXXX.safetensors``) a killed writer left behind."""
        if not self.directory.is_dir():
            return
        now = time.time()
        for tmp in self.directory.glob(f".*{self.SUFFIX}"):
            try:
                if now - tmp.stat().st_mtime > self.STALE_SECONDS:
                    tmp.unlink()
            except OSError:
                pass  # another process removed or renamed it first


def _data_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names and raw bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
