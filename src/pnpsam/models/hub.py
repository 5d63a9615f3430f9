"""Is a model reachable? Offline detection, once, and one clear error for a model that is not.

Without a network, ``from_pretrained`` of a hub id that is not cached retries for tens of
seconds and then raises a long ``OSError``. Here the question is answered once per process:
``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` set, or the hub endpoint (``HF_ENDPOINT``) not
accepting a connection within ``PROBE_TIMEOUT_S``, means offline. A hub id that is then not in
the local cache fails at once with :class:`ModelUnavailableError`, which names the model, why
(offline, not found, gated) and what to do instead. Local folders and files are never probed.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

from pnpsam.errors import InputError

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 2.0  # a reachable hub answers a TCP connect in well under a second
_TRUE = {"1", "true", "yes", "on"}


class ModelDownloadWarning(UserWarning):
    """A hub model is about to be downloaded (it is not in the local cache)."""


class ModelUnavailableError(OSError, InputError):
    """A model cannot be loaded: offline and not cached, not found, or gated.

    An ``OSError`` (what ``from_pretrained`` raises, so fallbacks that catch it still work) and
    a ``ValueError`` (a user error: the command line prints it as one line).
    """


def is_local(model: str) -> bool:
    """Whether ``model`` names a local file or folder (or looks like a path, not ``owner/name``)."""
    return Path(model).expanduser().exists() or model.startswith((".", "/", "~"))


@functools.lru_cache(maxsize=8)
def _endpoint_unreachable(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be reached (one bounded TCP connect per process), or None."""
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    outcome: list[str | None] = []

    def connect() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"cannot reach {endpoint} ({error.strerror or error})")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    return outcome[0] if outcome else f"cannot reach {endpoint} (no answer in {PROBE_TIMEOUT_S} s)"


def offline_reason() -> str | None:
    """Why the hub is not usable now (an environment switch, or no connection), or None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"offline: {name} is set"
    endpoint = os.environ.get("HF_ENDPOINT", DEFAULT_ENDPOINT)
    reason = _endpoint_unreachable(endpoint)
    return f"offline: {reason}" if reason else None


def is_cached(model: str, revision: str | None = None) -> bool:
    """Whether hub id ``model`` has a ``config.json`` or ``model_index.json`` in the cache."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "model_index.json"):
        try:
            found = try_to_load_from_cache(model, name, revision=revision)
        except ValueError:  # not a valid repo id
            return False
        if isinstance(found, str):
            return True
    return False


def check_available(model: str, what: str, advice: str, revision: str | None = None) -> bool:
    """Raise :class:`ModelUnavailableError` at once when hub id ``model`` cannot be loaded
    because the hub is offline and it is not cached. Returns whether to load it with
    ``local_files_only=True`` (offline but cached: no network retries).

    ``what`` names the model's role ("SAM", "the text model"), ``advice`` what to do instead.
    Online, a model that is not cached gets a :class:`ModelDownloadWarning` (one line: it will
    be downloaded, and ``advice``) before it loads. A local path is left to the loader (its own
    errors name the path).
    """
    if is_local(model):
        return False
    reason = offline_reason()
    if reason is None:
        if not is_cached(model, revision):  # said before the download starts, in one line
            warnings.warn(
                f"{what} {model!r} is not in the local hub cache and will be downloaded now; "
                f"offline instead: {advice}",
                ModelDownloadWarning,
                stacklevel=2,
            )
        return False
    if is_cached(model, revision):
        return True
    raise ModelUnavailableError(
        f"cannot load {what} {model!r}: {reason}, and it is not in the local hub cache; {advice}"
    )


def unavailable(model: str, what: str, advice: str, error: BaseException) -> ModelUnavailableError:
    """The :class:`ModelUnavailableError` for a failed load: why (not found, gated, offline,
    or the loader's own words) and ``advice``."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(e, GatedRepoError) for e in chain):
        why = "the repository is gated (accept its licence on the hub and log in with a token)"
    elif any(isinstance(e, (RepositoryNotFoundError, RevisionNotFoundError)) for e in chain):
        why = "no such repository or revision on the hub (a typo, or a private one)"
    elif any(isinstance(e, LocalEntryNotFoundError) for e in chain):
        why = "offline, and it is not in the local hub cache"
    else:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ModelUnavailableError(f"cannot load {what} {model!r}: {why}; {advice}")
