"""Load Stable Diffusion 1.x/2.x and SDXL checkpoints the way diffusers users expect.

Accepts a hub id, a local diffusers folder, or a single ``.safetensors`` file (pickled
``.ckpt`` only with an explicit opt-in). The backbone is read from the model's own config
(``pnpsam.models.backbones``): SD 1.x/2.x load as a ``StableDiffusionPipeline``, SDXL as a
``StableDiffusionXLPipeline``; other architectures are refused by name. The scheduler is DDIM
with the checkpoint's prediction type (epsilon or v), with no safety checker (PnP never calls
the pipeline's ``__call__``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMInverseScheduler,
    DDIMScheduler,
    DiffusionPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from pnpsam.config import ModelConfig, resolve_model_name, short_repr
from pnpsam.errors import UserError
from pnpsam.models.backbones import (
    Backbone,
    Family,
    UnsupportedBackboneError,
    detect,
    from_tensor_names,
    header_names,
)
from pnpsam.models.hub import ModelUnavailableError, check_available, unavailable

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
REQUIRED_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# The parts each backbone family's folder must hold, and the pipeline class that loads it.
FAMILY_PARTS: dict[Family, tuple[str, ...]] = {
    "sd": REQUIRED_PARTS,
    "sdxl": (*REQUIRED_PARTS, "text_encoder_2", "tokenizer_2"),
}
PIPELINES: dict[Family, type[DiffusionPipeline]] = {
    "sd": StableDiffusionPipeline,
    "sdxl": StableDiffusionXLPipeline,
}
SAFE_SINGLE_FILE = (".safetensors",)
PICKLED_SINGLE_FILE = (".ckpt", ".pt", ".pth", ".bin")


class ModelLoadError(UserError, RuntimeError):
    """The model could not be loaded; the message names the model and the reason."""


MODEL_ADVICE = (
    "give a local diffusers folder or .safetensors file as the model (--model), or use the "
    "shipped toy-world model (--model toy)"
)
# Tensor-name prefixes of a Stable Diffusion UNet in the single-file layouts diffusers reads:
# the original LDM checkpoint, and a diffusers UNet saved as one file.
SD_UNET_PREFIXES = ("model.diffusion_model.", "unet.", "down_blocks.", "conv_in.")


def single_file_names(path: Path) -> list[str]:
    """The tensor names in a ``.safetensors`` file's header; a clear error when unreadable."""
    try:
        return header_names(path)
    except Exception as error:  # safetensors raises its own error types for a bad header
        raise ModelLoadError(
            f"{str(path)!r} is not a readable .safetensors file: {error}"
        ) from None


def check_single_file(path: Path, names: list[str], config: str | None) -> None:
    """Refuse a ``.safetensors`` that holds no Stable Diffusion UNet, from its header's tensor
    ``names`` (diffusers would otherwise guess a model type and go to the hub for its configs)."""
    if not any(name.startswith(SD_UNET_PREFIXES) for name in names):
        shown = ", ".join(names[:3]) or "no tensors"
        raise ModelLoadError(
            f"{str(path)!r} is not a Stable Diffusion checkpoint: none of its {len(names)} "
            f"tensors ({shown}, ...) is a UNet weight (model.diffusion_model.*). Give a SD "
            "1.x/2.x checkpoint or a diffusers folder"
            + (
                ""
                if config
                else "; for a checkpoint in another layout, name its configs with "
                "--single-file-config (a diffusers folder or hub id)"
            )
        )


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda, then mps, then cpu; an explicit device must be available."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' requested but CUDA is not available on this machine")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' requested but MPS is not available on this machine")
    if device not in ("cpu", "cuda", "mps"):
        raise ModelLoadError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return torch.device(device)


def resolve_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check_folder(folder: Path, family: Family = "sd") -> None:
    missing = [part for part in FAMILY_PARTS[family] if not (folder / part).is_dir()]
    if missing:
        kind = "an SDXL" if family == "sdxl" else "a Stable Diffusion"
        raise ModelLoadError(
            f"model folder {str(folder)!r} is not {kind} diffusers folder: "
            f"missing {', '.join(p + '/' for p in missing)}"
        )
    _check_index(folder / "model_index.json")


# Libraries a Stable Diffusion folder's model_index.json may name for its parts: diffusers
# imports any module the index names, so an index naming ("os", "system") must stop here.
INDEX_LIBRARIES = ("diffusers", "transformers")


def _check_index(index: Path) -> None:
    """Refuse a ``model_index.json`` that is not JSON or names a part's class in a library
    other than ``INDEX_LIBRARIES`` (the error names the part)."""
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"model folder {str(index.parent)!r} has no model_index.json"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ModelLoadError(f"cannot read {str(index)!r}: {error}") from None
    if not isinstance(entries, dict):
        raise ModelLoadError(f"{str(index)!r} must hold a JSON object")
    for part, value in entries.items():
        if part.startswith("_") or not isinstance(value, list):
            continue
        library = value[0] if value else None
        if library is not None and library not in INDEX_LIBRARIES:
            raise ModelLoadError(
                f"{str(index)!r}: part {part!r} names {short_repr(value)}; a Stable Diffusion "
                f"folder's parts come from {' or '.join(INDEX_LIBRARIES)}"
            )


def _family(backbone: Backbone | None) -> Family:
    return backbone.family if backbone is not None else "sd"


def _load(cfg: ModelConfig, dtype: torch.dtype) -> DiffusionPipeline:
    path = Path(resolve_model_name(cfg.model)).expanduser()
    common: dict[str, Any] = {"dtype": dtype}
    no_checker = {"safety_checker": None, "requires_safety_checker": False}
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in PICKLED_SINGLE_FILE and not cfg.allow_pickle:
            raise ModelLoadError(
                f"{str(path)!r} is a pickled checkpoint, and unpickling can run arbitrary code; "
                "convert it to .safetensors or pass --allow-pickle if you trust its source"
            )
        if suffix not in SAFE_SINGLE_FILE + PICKLED_SINGLE_FILE:
            raise ModelLoadError(
                f"{str(path)!r} is not a checkpoint file (expected .safetensors, or .ckpt with "
                "--allow-pickle) nor a diffusers folder"
            )
        backbone = None
        if suffix in SAFE_SINGLE_FILE:  # its header is read once
            names = single_file_names(path)
            backbone = from_tensor_names(str(path), names)  # an SD3/FLUX file is named here
            check_single_file(path, names, cfg.single_file_config)
        if backbone is None and cfg.single_file_config:  # the named configs say what it is
            backbone = detect(resolve_model_name(cfg.single_file_config))
        family = _family(backbone)
        kwargs = dict(common) | (no_checker if family == "sd" else {})
        if cfg.single_file_config:
            kwargs["config"] = cfg.single_file_config
        # the absolute path, so model_info()'s resolved path does not depend on its spelling
        return PIPELINES[family].from_single_file(str(path.resolve()), **kwargs)
    if path.is_dir():
        _check_index(path / "model_index.json")  # before reading what the index names
        family = _family(detect(str(path)))
        _check_folder(path, family)
        kwargs = dict(common) | (no_checker if family == "sd" else {})
        return PIPELINES[family].from_pretrained(
            str(path.resolve()), local_files_only=True, **kwargs
        )
    if cfg.model.startswith((".", "/", "~")) or cfg.model.count("/") != 1:
        raise ModelLoadError(
            f"model {cfg.model!r} is neither an existing file or folder nor a hub id (owner/name)"
        )
    cached = check_available(cfg.model, "Stable Diffusion model", MODEL_ADVICE, cfg.revision)
    family = _family(detect(cfg.model, cfg.revision, local_only=cached))
    kwargs = dict(common) | (no_checker if family == "sd" else {})
    try:
        return PIPELINES[family].from_pretrained(
            cfg.model, revision=cfg.revision, local_files_only=cached, **kwargs
        )
    except OSError as error:
        raise unavailable(cfg.model, "Stable Diffusion model", MODEL_ADVICE, error) from error


def load_stable_diffusion(cfg: ModelConfig) -> tuple[DiffusionPipeline, torch.device]:
    """Load the checkpoint named by ``cfg`` and place it; returns (pipeline, execution device):
    a ``StableDiffusionPipeline`` (SD 1.x/2.x) or ``StableDiffusionXLPipeline`` (SDXL).

    The pipeline's scheduler is replaced by ``DDIMScheduler`` built from the checkpoint's own
    scheduler config (betas, offset, prediction type) with ``clip_sample=False``, as PnP needs.
    An SDXL VAE that diffusers upcasts in fp16 (``force_upcast``: it overflows) is kept in fp32.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype)
    try:
        pipe = _load(cfg, dtype)
    except (ModelLoadError, UnsupportedBackboneError):
        raise
    except ModelUnavailableError as error:  # offline, not found, gated: already explained
        raise ModelLoadError(str(error)) from error
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"could not load Stable Diffusion model {cfg.model!r}: {err}") from err
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config, clip_sample=False)
    sdxl = isinstance(pipe, StableDiffusionXLPipeline)
    if sdxl and dtype == torch.float16 and getattr(pipe.vae.config, "force_upcast", False):
        pipe.vae.to(torch.float32)
    pipe.set_progress_bar_config(disable=None)
    if cfg.cpu_offload:
        if device.type == "cpu":
            raise ModelLoadError("cpu_offload needs an accelerator device (cuda or mps)")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe, device


def inverse_scheduler_for(scheduler: DDIMScheduler) -> DDIMInverseScheduler:
    """The DDIM inverse scheduler with the same betas, offset and prediction type."""
    return DDIMInverseScheduler.from_config(scheduler.config)
