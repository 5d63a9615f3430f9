"""Which diffusion backbone a model is, read from its own config before anything is loaded.

Supported: UNet models in Stable Diffusion 1.x/2.x layout (epsilon or v-prediction: one
``StableDiffusionPipeline``) and SDXL base (``StableDiffusionXLPipeline``: two text encoders,
pooled text and size conditioning). Anything else (an SD3 or FLUX transformer, the SDXL
refiner, ...) gets :class:`UnsupportedBackboneError`, naming what was found.

Evidence, by model kind:
- a diffusers folder or hub id: ``model_index.json`` (pipeline class, parts) and
  ``unet/config.json`` (``addition_embed_type == "text_time"`` is SDXL's added conditioning);
- a single ``.safetensors`` file: tensor names in its header (LDM's SDXL UNet has
  ``label_emb``, SD3 ``joint_blocks``, FLUX ``double_blocks``; SD 2.x's text encoder is
  OpenCLIP ``cond_stage_model.model``).
The prediction type (epsilon / v) is the scheduler's, read from the loaded pipeline
(:func:`describe_pipeline`): a single file does not state it in its tensor names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pnpsam.errors import InputError

Family = Literal["sd", "sdxl"]

SUPPORTED = "SD 1.x, SD 2.x (epsilon or v-prediction) and SDXL base"
# SDXL base's decoder (diffusers' unet/config.json of stabilityai/stable-diffusion-xl-base-1.0):
# what a single file's sites are planned from before its configs are read.
SDXL_UP_BLOCKS = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
SD_UP_BLOCKS = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
LAYERS_PER_BLOCK = 2
# Header tensor-name prefixes of architectures that are not supported yet, and their names.
UNSUPPORTED_PREFIXES = (
    (("model.diffusion_model.joint_blocks.", "joint_blocks."), "Stable Diffusion 3 (MMDiT)"),
    (("double_blocks.", "model.diffusion_model.double_blocks."), "FLUX"),
)


class UnsupportedBackboneError(InputError):
    """The model is a diffusion architecture pnp-sam does not edit yet; the message names it."""


@dataclass(frozen=True)
class Backbone:
    """A supported backbone: ``family`` picks the pipeline, ``up_block_types`` and
    ``layers_per_block`` give the decoder layout the PnP sites are planned from."""

    family: Family
    name: str  # "SD 1.x", "SD 2.x", "SDXL", or "SD-layout UNet" for other widths
    up_block_types: tuple[str, ...]
    layers_per_block: int
    prediction_type: str | None = None  # epsilon / v_prediction; None = not known yet

    def pnp_blocks(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The paper's sites as this decoder numbers them: (residual, attention) LDM output
        blocks (the resnets of the up blocks in order, ``layers_per_block + 1`` each).

        PnP injects the residual features of the second layer at the decoder's coarse
        resolution, a quarter of the latent side (output block 4 of SD 1.x/2.x: 16x16 of a
        64x64 latent), and the self-attention of every decoder layer from there on. Up block
        i of n runs at 1/2^(n-1-i) of the latent side, so that resolution is up block n - 3:
        SD 1.x/2.x (4 up blocks) give (4,), (4..11), the paper's own; SDXL (3 up blocks, no
        attention at the finest) gives (1,), (1..5). See docs/backbones.md.
        """
        per_block = self.layers_per_block + 1
        coarse = max(len(self.up_block_types) - 3, 0)
        residual = coarse * per_block + min(1, per_block - 1)
        attention = tuple(
            b
            for b in range(residual, len(self.up_block_types) * per_block)
            if "CrossAttn" in self.up_block_types[b // per_block]
        )
        return (residual,), attention

    @property
    def label(self) -> str:
        """E.g. "SD 2.x (v_prediction)"."""
        return self.name + (f" ({self.prediction_type})" if self.prediction_type else "")


def unsupported(model: str, what: str, evidence: str) -> UnsupportedBackboneError:
    return UnsupportedBackboneError(
        f"model {model!r} is {what} ({evidence}): not supported yet; pnp-sam edits with "
        f"{SUPPORTED} models"
    )


def from_unet_config(
    model: str, unet: Mapping[str, Any], index: Mapping[str, Any] | None = None
) -> Backbone:
    """The backbone of a diffusers UNet config (and its pipeline's ``model_index.json``)."""
    parts = set(index or {})
    up_blocks = tuple(unet.get("up_block_types") or ())
    layers = unet.get("layers_per_block", LAYERS_PER_BLOCK)
    layers = layers if isinstance(layers, int) else int(layers[0])
    if unet.get("addition_embed_type") == "text_time":
        if index is not None and "text_encoder" not in parts:
            raise unsupported(
                model,
                "the SDXL refiner",
                "an SDXL UNet with one text encoder, text_encoder_2 only",
            )
        return Backbone("sdxl", "SDXL", up_blocks, layers)
    if unet.get("addition_embed_type") or unet.get("class_embed_type"):
        kind = unet.get("addition_embed_type") or unet.get("class_embed_type")
        raise unsupported(model, "a UNet with extra conditioning", f"embedding type {kind!r}")
    width = unet.get("cross_attention_dim")
    name = {768: "SD 1.x", 1024: "SD 2.x"}.get(width if isinstance(width, int) else 0)
    return Backbone("sd", name or "SD-layout UNet", up_blocks, layers)


def from_folder_configs(
    model: str, index: Mapping[str, Any] | None, unet: Mapping[str, Any] | None
) -> Backbone | None:
    """The backbone of a diffusers pipeline from its ``model_index.json`` and UNet config
    (None where absent); None when the index names a UNet whose config is missing (the
    loader names the missing part)."""
    pipeline = str((index or {}).get("_class_name", "an unknown pipeline"))
    if unet is None:
        if "unet" in (index or {}):
            return None
        parts = sorted(k for k in (index or {}) if not k.startswith("_"))
        denoiser = "transformer" if "transformer" in parts or "prior" in parts else "no UNet"
        raise unsupported(
            model, f"a {pipeline} model", f"its denoiser: {denoiser}; its parts: {', '.join(parts)}"
        )
    return from_unet_config(model, unet, index)


def from_tensor_names(model: str, names: Sequence[str]) -> Backbone | None:
    """The backbone of a single checkpoint file from its tensor names; None when they show
    no known UNet (the caller then says it is not a Stable Diffusion checkpoint)."""
    for prefixes, what in UNSUPPORTED_PREFIXES:
        found = next((n for n in names if n.startswith(prefixes)), None)
        if found is not None:
            raise unsupported(model, f"a {what} checkpoint", f"it holds {found}")

    def any_prefix(*prefixes: str) -> bool:
        return any(n.startswith(prefixes) for n in names)

    if any_prefix("model.diffusion_model.label_emb.", "add_embedding.", "unet.add_embedding."):
        if any_prefix("conditioner.embedders.") and not any_prefix("conditioner.embedders.1."):
            raise unsupported(
                model, "the SDXL refiner", "one text encoder (conditioner.embedders.0)"
            )
        return Backbone("sdxl", "SDXL", SDXL_UP_BLOCKS, LAYERS_PER_BLOCK)
    if not any_prefix("model.diffusion_model.", "unet.", "down_blocks.", "conv_in."):
        return None
    if any_prefix("cond_stage_model.model."):  # OpenCLIP ViT-H: SD 2.x
        return Backbone("sd", "SD 2.x", SD_UP_BLOCKS, LAYERS_PER_BLOCK)
    name = "SD 1.x" if any_prefix("cond_stage_model.transformer.") else "SD-layout UNet"
    return Backbone("sd", name, SD_UP_BLOCKS, LAYERS_PER_BLOCK)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None when absent; unreadable JSON is left to the loader."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def describe_pipeline(pipe: Any) -> Backbone:
    """The backbone of a loaded pipeline, with its scheduler's prediction type."""
    base = from_unet_config("loaded pipeline", dict(pipe.unet.config))
    prediction = str(pipe.scheduler.config.get("prediction_type", "epsilon"))
    return Backbone(
        "sdxl" if "text_encoder_2" in pipe.components else base.family,
        base.name,
        base.up_block_types,
        base.layers_per_block,
        prediction,
    )


def header_names(path: Path) -> list[str]:
    """The tensor names of a ``.safetensors`` file, from its header only."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys())


def detect(model: str, revision: str | None = None, local_only: bool = True) -> Backbone | None:
    """The backbone of ``model`` (a folder, a single file or a hub id) from its own config, or
    None when there is nothing to read (a hub id not in the cache with ``local_only``, a
    pickled file, an unreadable header): the loader then reports the reason.

    Raises :class:`UnsupportedBackboneError` for an architecture that is not supported.
    """
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            return None
        try:
            names = header_names(path)
        except Exception:  # safetensors raises its own types; the loader names the problem
            return None
        return from_tensor_names(model, names)
    if path.is_dir():
        index = read_json(path / "model_index.json")
        return from_folder_configs(model, index, read_json(path / "unet" / "config.json"))
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        return None
    return _from_hub(model, revision, local_only)


def _from_hub(model: str, revision: str | None, local_only: bool) -> Backbone | None:
    from huggingface_hub import hf_hub_download

    found: dict[str, dict[str, Any] | None] = {}
    for name in ("model_index.json", "unet/config.json"):
        try:
            file = hf_hub_download(model, name, revision=revision, local_files_only=local_only)
        except Exception:  # not cached, not found, gated, offline: the loader explains
            found[name] = None
            continue
        found[name] = read_json(Path(file))
    index = found["model_index.json"]
    if index is None:
        return None
    return from_folder_configs(model, found["model_index.json"], found["unet/config.json"])
