"""Opt-in speed-ups of a loaded pipeline for GPUs: channels-last memory and ``torch.compile``.

Neither changes what is computed (channels-last reorders memory, compile fuses kernels: the
results agree to floating-point tolerance) and both are off by default:

* channels-last (NHWC) lets cuDNN pick its tensor-core convolution kernels without transposes;
  on CPUs it rarely helps.
* ``torch.compile`` is applied per top-level UNet block (``down_blocks.i``, ``mid_block``,
  ``up_blocks.i``), and only to blocks that hold none of the ``eager`` modules: the PnP
  injection sites swap attention processors and hooks per edit and read per-step state, which
  would make a compiled block re-trace at every edit. Compiling costs tens of seconds on the
  first call (and at each new batch size), so it pays back only over many edits in one process.

CUDA graphs are not used: the batch changes inside an edit (the source row is dropped once
injection ends), the injection decides per step in Python which features to replace and records
copies of them, and the row counter and progress hooks run per call; a captured graph would
replay none of that.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers import StableDiffusionPipeline

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")


def unet_blocks(unet: torch.nn.Module) -> list[str]:
    """Names of the UNet's top-level blocks in forward order: down, mid, up."""
    names = [f"down_blocks.{i}" for i in range(len(getattr(unet, "down_blocks", ())))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid_block")
    names += [f"up_blocks.{i}" for i in range(len(getattr(unet, "up_blocks", ())))]
    return names


def speed_up(
    sd: StableDiffusionPipeline,
    channels_last: bool = False,
    compile_mode: str | None = None,
    eager: Iterable[str] = (),
    backend: str = "inductor",
) -> list[str]:
    """Apply the chosen speed-ups to ``sd`` in place; returns the names of compiled blocks.

    ``compile_mode`` is one of ``COMPILE_MODES`` (None: no compile); ``eager``: module names
    (e.g. the injection sites) whose top-level block must stay uncompiled; ``backend``: the
    ``torch.compile`` backend ("eager" traces without generating code, for tests).
    Blocks are compiled in place (``Module.compile``), so module names, hooks and attention
    processors stay where the rest of pnp-sam finds them.
    """
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise ValueError(f"compile mode {compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
    if channels_last:
        sd.unet.to(memory_format=torch.channels_last)
        sd.vae.to(memory_format=torch.channels_last)
    if compile_mode is None:
        return []
    keep = list(eager)
    modules = dict(sd.unet.named_modules())
    compiled = []
    for name in unet_blocks(sd.unet):
        if any(site == name or site.startswith(name + ".") for site in keep):
            continue
        if backend == "inductor":
            modules[name].compile(mode=compile_mode)
        else:  # modes are inductor's
            modules[name].compile(backend=backend)
        compiled.append(name)
    return compiled
