"""pnp-sam: Plug-and-Play diffusion features for text-driven image translation, subject-aware.

The Python API is ``PnPEditor`` (load once, edit many); configuration lives in ``pnpsam.config``.
"""

import logging


class _TorchvisionFallbackFilter(logging.Filter):
    """Drops transformers' notice that an image processor falls back to its PIL version.

    pnp-sam runs without torchvision by design (its wheels clash with the pinned CPU torch), so
    the PIL processors are the intended ones; the notice printed on every CLI run otherwise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back" not in record.getMessage()


# Before diffusers is imported: importing its pipelines triggers the notice.
logging.getLogger("transformers.utils.import_utils").addFilter(_TorchvisionFallbackFilter())

from typing import TYPE_CHECKING  # noqa: E402

from pnpsam.config import (  # noqa: E402
    EditConfig,
    InversionConfig,
    ModelConfig,
    PnPConfig,
    PreprocessConfig,
)
from pnpsam.lazy import lazy_exports  # noqa: E402

if TYPE_CHECKING:
    from pnpsam.api import EditResult, Inversion, PnPEditor

# The API needs torch; it is imported when first used, so `pnpsam --help` stays fast.
__getattr__ = lazy_exports(__name__, {"pnpsam.api": ("EditResult", "Inversion", "PnPEditor")})

__all__ = [
    "EditConfig",
    "EditResult",
    "Inversion",
    "InversionConfig",
    "ModelConfig",
    "PnPConfig",
    "PnPEditor",
    "PreprocessConfig",
]
__version__ = "0.1.0"
