"""Package attributes imported on first use (PEP 562), so ``import pnpsam.cli`` stays light.

torch, diffusers and transformers take seconds to import; a package ``__init__`` that names its
public classes through :func:`lazy_exports` loads their modules only when one is used, so
``pnpsam --help`` answers without them. Type checkers read the same names from a
``TYPE_CHECKING`` import block beside it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, modules: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``modules``: submodule -> the names it exports."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__
