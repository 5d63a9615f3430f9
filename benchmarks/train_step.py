"""Seconds per UNet + text-encoder training step of toy v2 (32x32 latent): the loop as it was
before it became GPU-efficient ("legacy": draws on the host, five host-to-device copies and a
``loss.item()`` every step, per-parameter EMA, unfused AdamW) against ``train.train_unet``
("new": data moved once, draws on the device, loss read at log steps only, foreach EMA and
fused AdamW on CUDA), in one process, each timed over the same batch size and step count.

    OMP_NUM_THREADS=1 python benchmarks/train_step.py --threads 1 --batch 32 --steps 8
    OMP_NUM_THREADS=2 python benchmarks/train_step.py --threads 2 --batch 32 --steps 8
    python benchmarks/train_step.py --threads 2 --batch 128 --steps 3 --loops new  # CPU cost
    python benchmarks/train_step.py --profile --batch 1      # where a step's time goes
    python benchmarks/train_step.py --device cuda --batch 128 --steps 100 --sync-debug

Prints the median s/step of each loop over ``--repeats`` (loops alternate, so drift on a
shared machine hits both), the ratio legacy / new, and with ``--sync-debug`` (CUDA) the host
syncs per step that ``torch.cuda.set_sync_debug_mode`` reports. On the CPU both loops compute
the same numbers (nothing ever waited there), so a ratio near 1 is expected; the change is for
the GPU, where each blocking copy or ``.item()`` drains the queue and the GPU idles while the
host draws the next batch. Random weights: the time of a step does not depend on them.

Measured here (2 shared CPU cores, load about 20, so times are inflated; 2026-12-04): batch 16,
1 thread: legacy 25.1 s/step, new 20.0 (ranges 21-35 and 17-44), and at load about 3 legacy
3.39, new 3.62 (0.94x); 2 threads: legacy 15.5, new 21.2 (ranges 14-48 and 20-47): noise, the
two compute the same on the CPU. ``--profile --batch 1 --steps 2``: about 19900 leaf operators a
step (forward 2400, backward 3900, optimiser phase 13000: the CPU's per-parameter AdamW and EMA
over 492 parameter tensors), 2.3 GFLOP of matmul/conv/attention per sample, so 0.3 TFLOP a step
at batch 128. On the H200 that is milliseconds of arithmetic, while thousands of launches and
six syncs a step cost on the order of 100 ms: the v2 run's 0.13 s/step was most likely the host
(inferred here, not yet profiled on a GPU: run --sync-debug and --profile there).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.training_utils import EMAModel
from torch.utils.flop_counter import FlopCounterMode

from pnpsam.toyworld import train as T
from pnpsam.toyworld.model import (
    ToyModelConfig,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
)
from pnpsam.toyworld.world import sample_specs


def legacy_train_unet(unet, text_encoder, latents, token_ids, empty_ids, cfg) -> None:
    """The UNet loop before this change (commit c5ee307), kept as the timing baseline."""
    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    snr = noise_sched.alphas_cumprod / (1.0 - noise_sched.alphas_cumprod)
    loss_weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr
    device = next(unet.parameters()).device
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-2)
    unet_ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    text_ema = EMAModel(text_encoder.parameters(), decay=cfg.ema_decay)
    running = 0.0
    for step in range(cfg.unet_steps):
        T._set_lr(opt, cfg.unet_lr, step, cfg.unet_steps, cfg.warmup_steps)
        idx = torch.randint(len(latents), (cfg.unet_batch,), generator=gen)
        x0 = latents[idx]
        ids = token_ids[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout
        ids[drop] = empty_ids
        noise = torch.randn(x0.shape, generator=gen)
        noise += cfg.offset_noise * torch.randn((*x0.shape[:2], 1, 1), generator=gen)
        t = torch.randint(0, 1000, (cfg.unet_batch,), generator=gen)
        noisy = noise_sched.add_noise(x0, noise, t)
        context = text_encoder(ids.to(device))[0]
        pred = unet(noisy.to(device), t.to(device), encoder_hidden_states=context).sample
        per_sample = F.mse_loss(pred, noise.to(device), reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * loss_weight[t].to(device)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        unet_ema.step(unet.parameters())
        text_ema.step(text_encoder.parameters())
        running += loss.item()


def _setup(args: argparse.Namespace):
    device = torch.device(args.device)
    T._configure_device(device)
    model_cfg = ToyModelConfig.for_latent(32)
    tokenizer = build_tokenizer(model_cfg)
    captions = [spec.caption for spec in sample_specs(args.data, seed=0)]
    token_ids = T.tokenize(tokenizer, captions)
    empty_ids = T.tokenize(tokenizer, [""])[0]
    torch.manual_seed(0)
    unet = build_unet(model_cfg).to(device)
    text_encoder = build_text_encoder(model_cfg, tokenizer).to(device)
    latents = torch.randn(args.data, 4, 32, 32)
    cfg = replace(
        T.TrainConfig(),
        unet_steps=args.steps,
        unet_batch=args.batch,
        warmup_steps=1,
        log_every=args.steps,
        save_every=10**9,
    )
    return device, unet, text_encoder, latents, token_ids, empty_ids, cfg


def _timed(device: torch.device, run: Callable[[], None], steps: int, sync_debug: bool):
    """(s/step, host syncs per step or None) of one ``run`` of ``steps`` steps."""
    T._sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if sync_debug:
            torch.cuda.set_sync_debug_mode("warn")
        start = time.perf_counter()
        try:
            run()
            T._sync(device)
        finally:
            if sync_debug:
                torch.cuda.set_sync_debug_mode("default")
        seconds = time.perf_counter() - start
    syncs = sum("synchroniz" in str(w.message) for w in caught) / steps if sync_debug else None
    return seconds / steps, syncs


def compare(args: argparse.Namespace) -> None:
    device, unet, text_encoder, latents, ids, empty, cfg = _setup(args)
    opts = T.DeviceOptions(bf16=args.bf16, compile=args.compile)
    loops: dict[str, Callable[[], None]] = {
        "legacy": lambda: legacy_train_unet(unet, text_encoder, latents, ids, empty, cfg),
        "new": lambda: T.train_unet(unet, text_encoder, latents, ids, empty, cfg, opts=opts),
    }
    names = [n for n in args.loops.split(",") if n]
    for name in names:  # warm-up: allocator, cuDNN autotuning, compilation
        loops[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    syncs: dict[str, float | None] = {}
    for repeat in range(args.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            seconds, syncs[name] = _timed(device, loops[name], args.steps, args.sync_debug)
            times[name].append(seconds)
            print(f"  repeat {repeat} {name}: {seconds:.4f} s/step", flush=True)
    print(
        f"toy v2 UNet step, device {device}, batch {args.batch}, {args.steps} steps x "
        f"{args.repeats} repeats, threads {torch.get_num_threads()}, bf16 {args.bf16}, "
        f"compile {args.compile}"
    )
    for name in names:
        line = f"  {name:6s} median {statistics.median(times[name]):.4f} s/step"
        line += f" (min {min(times[name]):.4f}, max {max(times[name]):.4f})"
        if syncs.get(name) is not None:
            line += f", {syncs[name]:.1f} host syncs/step"
        print(line)
    if len(names) == 2:
        ratio = statistics.median(times[names[0]]) / statistics.median(times[names[1]])
        print(f"  ratio {names[0]} / {names[1]}: {ratio:.2f}x")


def profile(args: argparse.Namespace) -> None:
    """Per-phase time and operator count of the new loop's steps (``torch.profiler``)."""
    device, unet, text_encoder, latents, ids, empty, cfg = _setup(args)
    T.train_unet(unet, text_encoder, latents, ids, empty, cfg)  # warm-up
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        T.train_unet(unet, text_encoder, latents, ids, empty, cfg)
        T._sync(device)
    events = prof.events()
    phases = {e.key: e for e in prof.key_averages() if e.key.startswith("unet.")}
    total = sum(p.cpu_time_total for p in phases.values())
    print(f"toy v2 UNet step profile, device {device}, batch {args.batch}, {args.steps} steps")
    for name in ("unet.draw", "unet.forward", "unet.backward", "unet.optimizer"):
        phase = phases[name]
        print(
            f"  {name:15s} {phase.cpu_time_total / 1e3 / args.steps:8.1f} ms/step host "
            f"({100 * phase.cpu_time_total / total:4.1f}%)"
        )
    # Leaf operators (no child operator) are what a GPU would get as kernel launches, give or
    # take: the backward's autograd nodes call them too.
    leaves = [e for e in events if e.name.startswith("aten::") and not e.cpu_children]
    print(f"  leaf aten operators: {len(leaves) / args.steps:.0f} per step")
    by_phase: dict[str, int] = {}
    for leaf in leaves:
        parent = leaf.cpu_parent
        while parent is not None and not parent.name.startswith("unet."):
            parent = parent.cpu_parent
        key = parent.name if parent is not None else "outside the phases"
        by_phase[key] = by_phase.get(key, 0) + 1
    for key, count in sorted(by_phase.items()):
        print(f"    {key}: {count / args.steps:.0f} per step")
    params = [*unet.parameters(), *text_encoder.parameters()]
    print(f"  parameter tensors: {len(params)} ({sum(p.numel() for p in params) / 1e6:.2f} M)")
    with FlopCounterMode(display=False) as flops:
        T.train_unet(unet, text_encoder, latents, ids, empty, replace(cfg, unet_steps=1))
    print(f"  matmul/conv/attention: {flops.get_total_flops() / 1e9:.1f} GFLOP per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per loop")
    parser.add_argument("--data", type=int, default=2048, help="random latents to draw from")
    parser.add_argument("--loops", default="legacy,new", help="comma-separated: legacy,new")
    parser.add_argument("--bf16", action="store_true", help="new loop: bfloat16 autocast")
    parser.add_argument("--compile", action="store_true", help="new loop: torch.compile")
    parser.add_argument("--sync-debug", action="store_true", help="CUDA: count host syncs")
    parser.add_argument("--profile", action="store_true", help="profile the new loop instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.profile:
        profile(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
