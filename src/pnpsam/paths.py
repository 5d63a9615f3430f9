"""File names made from untrusted text (manifest ids, names derived from prompts or paths).

The choice here is to **sanitise**, not refuse: a dataset whose ids contain ``/`` or ``:`` is
still usable, and every name that comes out is one plain file-name component that cannot leave
its output folder. ``safe_name`` keeps ``[A-Za-z0-9._-]``, turns every other run of characters
into ``_``, never starts with a dot (no ``.``/``..``, no hidden files), avoids Windows' reserved
device names and is at most ``MAX_NAME`` characters. Whenever it had to change the text it
appends ``-`` and 8 hex digits of the text's SHA-256, so two different ids never share a name
(``a/b`` and ``a_b`` stay apart) and the same id always gets the same name (resume works).
``inside`` is the belt to those braces: it refuses any joined path that resolves outside its
folder.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pnpsam.errors import InputError

MAX_NAME = 100  # characters; leaves room for suffixes like "_12.png" under the usual 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{p}{i}" for p in ("COM", "LPT") for i in "123456789"
}


class UnsafePathError(InputError):
    """A path built from untrusted text would leave its output folder."""


def safe_name(text: object) -> str:
    """One file-name component for ``text`` (see the module docstring); never empty."""
    original = str(text)
    name = _UNSAFE.sub("_", original).lstrip(".") or "_"
    if name.split(".")[0].upper() in _WINDOWS_RESERVED:
        name = "_" + name
    if name == original and len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


def inside(folder: str | Path, *parts: str) -> Path:
    """``folder / parts...``, refused with :class:`UnsafePathError` if it resolves outside."""
    root = Path(folder).resolve()
    path = root.joinpath(*parts).resolve()
    if path != root and root not in path.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} would be written outside {str(folder)!r}")
    return Path(folder).joinpath(*parts)
