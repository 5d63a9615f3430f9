"""Speed of pnp-sam against a pnp-diffusers-like schedule, run in the same process.

pnp-sam: one 50-step inversion per image, all prompts batched, the source row dropped once
nothing is injected. Port-like baseline (what pnp-diffusers does, minus its disk I/O): a
999-step inversion plus a 999-step reconstruction per image, then each prompt alone with the
source row kept for all 50 steps. Prints wall times, UNet row-evaluations and their ratios.

    python benchmarks/speed.py                        # tiny random model, CPU
    python benchmarks/speed.py --model stable-diffusion-v1-5/stable-diffusion-v1-5 \
        --device cuda --dtype fp16 --size 512 --prompts 4
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig, InversionConfig, ModelConfig, PnPConfig
from pnpsam.models.tiny import tiny_sd15_pipeline

PROMPTS = ["a red robot", "a blue dog", "a photo of snow", "a cat"]


def port_like(editor: PnPEditor, image: Image.Image, cfg: EditConfig, prompts: list[str]) -> int:
    """The port's schedule; returns UNet row-evaluations (999 inv + 999 recon + 3 x 50 each)."""
    port = EditConfig.from_dict(cfg.to_dict())
    port.inversion = InversionConfig(steps=999)
    inversion = editor.invert(image, port)
    pipe = editor.pipeline
    empty = inversion.latents.source_embedding
    pipe.scheduler.set_timesteps(999)
    latent = inversion.latents.at(981)  # same cost as from t=999
    with torch.no_grad():
        for t in pipe.scheduler.timesteps:  # the port's preview reconstruction
            noise = pipe.unet(latent, t, encoder_hidden_states=empty).sample
            latent = pipe.scheduler.step(noise, t, latent).prev_sample
    # the port keeps the source row for all steps: thresholds 1.0 cost the same rows
    keep_source = {"pnp_f_t": 1.0, "pnp_attn_t": cfg.pnp.pnp_attn_t}
    for prompt in prompts:
        editor.edit(inversion, prompt, port, **keep_source)
    return 2 * 999 + 3 * cfg.pnp.steps * len(prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="default: a tiny random SD 1.5 layout")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = args.model
    if model is None:
        model = tempfile.mkdtemp(prefix="pnpsam-tiny-")
        tiny_sd15_pipeline().save_pretrained(model)
    editor = PnPEditor.from_pretrained(
        ModelConfig(model=model, device=args.device, dtype=args.dtype)
    )
    editor.set_progress_bar_config(disable=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), np.uint8))
    cfg = editor.default_config()
    cfg.preprocess.size = args.size
    prompts = PROMPTS[: args.prompts] if args.prompts <= len(PROMPTS) else PROMPTS * args.prompts
    prompts = prompts[: args.prompts]

    for k in sorted({1, len(prompts)}):
        started = time.perf_counter()
        editor.store.clear()  # time the inversion too
        ours_evals = editor.edit(image, prompts[:k], cfg).unet_evaluations
        ours = time.perf_counter() - started
        started = time.perf_counter()
        editor.store.clear()
        port_evals = port_like(editor, image, cfg, prompts[:k])
        port = time.perf_counter() - started
        print(
            f"{k} prompt(s): pnp-sam {ours:.1f} s, {ours_evals} UNet rows | port-like "
            f"{port:.1f} s, {port_evals} UNet rows | speed-up x{port / ours:.1f} "
            f"(rows x{port_evals / ours_evals:.1f})"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak:.0f} MiB; defaults {PnPConfig().steps} steps, "
        f"device {editor.pipeline.device}, dtype {args.dtype}, size {args.size}"
    )
    if torch.cuda.is_available() and editor.pipeline.device.type == "cuda":
        print(f"peak CUDA memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
