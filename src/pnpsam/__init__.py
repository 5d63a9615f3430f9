"""pnp-sam: Plug-and-Play diffusion features for text-driven image translation, subject-aware.

The Python API is ``PnPEditor`` (load once, edit many); configuration lives in ``pnpsam.config``.
"""

from pnpsam.api import EditResult, Inversion, PnPEditor
from pnpsam.config import EditConfig, InversionConfig, ModelConfig, PnPConfig, PreprocessConfig

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
