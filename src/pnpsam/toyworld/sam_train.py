"""Train the toy-world Segment Anything model (transformers' ``SamModel``) on toy renders.

The world knows every pixel's meaning, so every render gives exact masks: the subject, each
clutter item (a connected component of the clutter mask) and the plain background. Each step
renders fresh scenes (training render seeds start at ``TRAIN_SEED_BASE``, far from every seed
the demo, the benchmarks and the tests render) and asks the model, per image, for the subject
and for one other segment (a clutter item or the background), with three kinds of prompt as in
the SAM paper (Kirillov et al. 2023, section 3 and appendix A): one positive click drawn
uniformly from the segment; several clicks (positives from the segment, negatives from its
surroundings, the clutter and the rest); the segment's box with noise (std 10% of its side,
clipped at ``box_noise_px``). The image encoder runs once per image; the three prompt kinds
run the light prompt encoder and mask decoder on that embedding. Loss as the paper: focal and
dice on the mask logits, 20:1, taking the best of the three multimask outputs (the paper's
minimum over candidates for ambiguous prompts), plus the IoU head's mean-squared error against
each candidate's actual IoU with the segment. The decoder's 4x upsampling of the 16x16
embedding grid makes its low-resolution masks exactly the toy's 64x64 pixels.

Saved as a ``save_pretrained`` folder (fp16 safetensors) with its own ``SamProcessor`` config
for the toy's 64 px images, loadable like ``facebook/sam-vit-base`` by
:class:`pnpsam.masks.sam.SamPointSegmenter`. Training state is kept in ``--work-dir`` every
``--save-every`` steps (written to a temporary file, then renamed), and a rerun resumes from
it with the same batches (each step's scenes come from its own seed), so a killed run loses
at most ``--save-every`` steps.

Two of transformers' initialisations are meant for loading SAM's weights, not for training,
and are replaced (``build_toy_sam``): the positional features (std ``hidden_size / 2`` = 32:
a 1 px move gave a new random code, so clicks matched no grid cell and the model learnt to
ignore them) get SAM's own std 1, fixed; the image encoder's weights (std 1e-10) get 0.02.
The weights shipped before this (550 steps, the old initialisations) answered every prompt
with the salient subject (one-click IoU 0.86 on held-out renders); with SAM's values 300
steps of 16 images reached 0.93.

Retrain the shipped model (deterministic on CPU: each step's scenes come from its own seed,
torch runs one thread; CI never trains). The shipped weights were made by this command on the
project's 2-core machine, beside other work on the second core::

    OMP_NUM_THREADS=1 python -m pnpsam.toyworld.sam_train --out src/pnpsam/assets/toy_sam \\
        --work-dir toy_sam_work --batch 24 --steps 4500 --warmup 100 --segments 2 \\
        --log-every 50 --save-every 250

Measured: 3727 s of training steps (62 minutes; 0.75-0.95 s per step of 24 images x 2
segments x 3 prompt kinds, one thread). Along the way (32 held-out renders,
``benchmarks/toy_sam_quality.py masks``): one click on the subject 0.974 mean IoU at step 500,
0.989 at 1000, 0.992 at 2500; a click on a background stone gave that stone at 0.001 IoU at
1000 (the three candidates were subject / a stone / background whatever the click) and 0.55
at 2500. The shipped 4500 steps: one click 0.997, a stone 0.72 (128 renders, README). Two
threads were 9x slower per step than one on shared cores (17.4 vs 1.8 s at batch 8), hence
``--threads 1``. SAM's relative positions in the encoder (``use_rel_pos``) cost 2.6x the
encoder time and are off; a 96-wide 4-layer encoder cost 2.3x the shipped 64-wide 3-layer one
(0.40 M parameters, 0.8 MB in fp16). Training the single-mask output for several clicks (as
SAM's paper does) left it flat for clicks after 400 steps, so every prompt kind trains the
three candidates, and the app and CLI always take the best-rated one that holds the clicks.

On a machine with a GPU, one command (not measured here: no device was lent; CUDA kernels may
make runs differ in the last bits)::

    python -m pnpsam.toyworld.sam_train --device cuda --batch 128 --steps 4000 \\
        --work-dir toy_sam_work_gpu --out src/pnpsam/assets/toy_sam
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from transformers import (
    SamConfig,
    SamImageProcessorPil,
    SamMaskDecoderConfig,
    SamModel,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)

from pnpsam.toyworld.prompts import box_of
from pnpsam.toyworld.world import BACKGROUNDS, COLORS, IMAGE_SIZE, SHAPES, SceneSpec, render_scene

log = logging.getLogger(__name__)

TRAIN_SEED_BASE = 10**9
"""First render seed of the training stream: step ``s`` renders seeds ``BASE + s * batch + i``.
Every other user of the world renders seeds below 10**7 (toy pairs: ``seed * 1000 + i``)."""

FOCAL_WEIGHT = 20.0  # the SAM paper's focal : dice ratio
FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0


@dataclass(frozen=True)
class ToySamConfig:
    """Sizes of the toy SAM. The 64 px toy image is cut into 4x4 patches (a 16x16 grid, like
    SAM's 64x64 grid at 1024 px / 16); the decoder's masks are 4x the grid: the full 64 px."""

    image_size: int = IMAGE_SIZE
    patch_size: int = 4
    vision_hidden: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    channels: int = 64  # the neck's output = prompt embeddings = the decoder's width
    decoder_heads: int = 4
    rel_pos: bool = False  # SAM's decomposed relative positions in the encoder's attention
    # Std of the random Fourier features that encode click and grid positions. SAM's own is 1.0
    # (segment-anything's PositionEmbeddingRandom, a fixed buffer); transformers initialises its
    # trainable copy with std hidden_size // 2 (32 here: about one cycle per pixel, so a click
    # matched no grid cell and the model learnt to ignore clicks). 0 keeps transformers' init.
    position_scale: float = 1.0

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def build_toy_sam(cfg: ToySamConfig) -> SamModel:
    """A randomly initialised ``SamModel`` of ``cfg``'s sizes (every layer global attention:
    256 tokens are cheap, and windows would cut the 16x16 grid into tiles)."""
    vision = SamVisionConfig(
        hidden_size=cfg.vision_hidden,
        output_channels=cfg.channels,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        patch_size=cfg.patch_size,
        image_size=cfg.image_size,
        window_size=0,
        global_attn_indexes=list(range(cfg.vision_layers)),
        mlp_dim=4 * cfg.vision_hidden,
        num_pos_feats=cfg.channels // 2,
        use_rel_pos=cfg.rel_pos,
        # transformers' default (1e-10) starts the encoder's layers at ~0: meant for loading SAM's
        # weights, not for training; 0.02 is the ViT init (and the decoder's here).
        initializer_range=0.02,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=cfg.channels,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        image_embedding_size=cfg.grid,
        mask_input_channels=16,
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=cfg.channels,
        mlp_dim=4 * cfg.channels,
        num_attention_heads=cfg.decoder_heads,
        iou_head_hidden_dim=cfg.channels,
    )
    model = SamModel(
        SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    )
    if cfg.position_scale > 0:
        features = model.shared_image_embedding.positional_embedding
        with torch.no_grad():
            features.normal_(0.0, cfg.position_scale)
        features.requires_grad_(False)  # fixed, as in SAM
    return model


def build_toy_sam_processor(cfg: ToySamConfig) -> SamProcessor:
    """SAM's processor for ``cfg.image_size`` inputs: the longest side resized to it, padded to
    a square; masks come back at 4x the embedding grid and are cropped/resized to the image."""
    low_res = 4 * cfg.grid
    return SamProcessor(
        image_processor=SamImageProcessorPil(
            size={"longest_edge": cfg.image_size},
            pad_size={"height": cfg.image_size, "width": cfg.image_size},
            mask_size={"longest_edge": low_res},
            mask_pad_size={"height": low_res, "width": low_res},
        )
    )


def training_spec(rng: np.random.Generator) -> SceneSpec:
    """A training scene: wider ranges than the evaluation sets (``sample_specs``: centre in
    [0.3, 0.7], size [0.16, 0.28]), so subjects near the border and small ones are seen too."""
    return SceneSpec(
        color=list(COLORS)[rng.integers(len(COLORS))],
        shape=SHAPES[rng.integers(len(SHAPES))],
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        center=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
        size=float(rng.uniform(0.1, 0.32)),
        clutter=int(rng.integers(0, 17)),
    )


def segments(subject: np.ndarray, clutter: np.ndarray) -> tuple[np.ndarray, ...]:
    """The render's segments as HxW bool masks: subject, background (neither subject nor
    clutter), then every clutter item (connected component, 8-connectivity)."""
    labels, count = ndimage.label(clutter, structure=np.ones((3, 3), bool))
    items = tuple(labels == k for k in range(1, count + 1))
    return (subject, ~(subject | clutter), *items)


def _pick(rng: np.random.Generator, mask: np.ndarray, count: int) -> np.ndarray:
    """``count`` (x, y) pixel coordinates drawn uniformly (with replacement) from ``mask``."""
    rows, cols = np.nonzero(mask)
    chosen = rng.integers(len(rows), size=count)
    return np.stack([cols[chosen], rows[chosen]], axis=1).astype(np.float32)


@dataclass
class Batch:
    """One step's data; B images, P segments per image, K clicks in the multi-click prompt.

    ``pixels`` B x 3 x S x S (the processor's normalisation); ``targets`` B x P x S x S bool;
    ``one_click`` B x P x 1 x 2; ``clicks`` B x P x K x 2 with ``labels`` B x P x K (1/0);
    ``boxes`` B x P x 4 XYXY. ``box_targets`` B x P x S x S: the boxes' segments (the
    background has no box: those rows ask for the subject again).
    """

    pixels: torch.Tensor
    targets: torch.Tensor
    one_click: torch.Tensor
    clicks: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    box_targets: torch.Tensor


def make_batch(
    step: int,
    batch: int,
    processor: SamProcessor,
    seed: int = 0,
    box_noise_px: float = 2.0,
    segments_per_image: int = 2,
) -> Batch:
    """Step ``step``'s batch, the same every time (its own RNG, its own render seeds). Each
    image asks for its subject and ``segments_per_image - 1`` other segments, drawn without
    repeats from the background and the clutter items while there are enough."""
    rng = np.random.default_rng([seed, step])
    clicks_per_prompt = int(rng.integers(2, 5))
    images, targets, box_targets = [], [], []
    one, many, labels, boxes = [], [], [], []
    for i in range(batch):
        scene = render_scene(training_spec(rng), TRAIN_SEED_BASE + step * batch + i)
        subject, background, *items = segments(scene.subject_mask, scene.clutter_mask)
        chosen = [subject, *_others(rng, background, items, segments_per_image - 1, subject)]
        images.append(scene.image)
        targets.append(np.stack(chosen))
        # The background has no box: those rows ask for the subject again.
        boxed = [subject if t is background else t for t in chosen]
        box_targets.append(np.stack(boxed))
        for target in chosen:
            one.append(_pick(rng, target, 1))
            positives = int(rng.integers(1, clicks_per_prompt))
            near = ndimage.binary_dilation(target, iterations=4) & ~target
            pools = [p for p in (near, scene.clutter_mask & ~target, ~target) if p.any()]
            negatives = [
                _pick(rng, pools[rng.integers(len(pools))], 1)
                for _ in range(clicks_per_prompt - positives)
            ]
            many.append(np.concatenate([_pick(rng, target, positives), *negatives]))
            labels.append([1] * positives + [0] * (clicks_per_prompt - positives))
        for target in boxed:
            box = np.asarray(box_of(target), np.float64)
            side = np.tile(box[2:] - box[:2], 2)  # (w, h, w, h) for (x0, y0, x1, y1)
            noise = np.clip(rng.normal(0.0, 0.1 * side), -box_noise_px, box_noise_px)
            noisy = np.clip(box + noise, 0.0, float(IMAGE_SIZE))
            boxes.append(box if noisy[2] <= noisy[0] or noisy[3] <= noisy[1] else noisy)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    per = (batch, segments_per_image)
    return Batch(
        pixels=pixels,
        targets=torch.as_tensor(np.stack(targets)),
        one_click=torch.as_tensor(np.stack(one)).reshape(*per, 1, 2),
        clicks=torch.as_tensor(np.stack(many)).reshape(*per, clicks_per_prompt, 2),
        labels=torch.as_tensor(np.asarray(labels)).reshape(*per, clicks_per_prompt),
        boxes=torch.as_tensor(np.stack(boxes), dtype=torch.float32).reshape(*per, 4),
        box_targets=torch.as_tensor(np.stack(box_targets)),
    )


def _others(
    rng: np.random.Generator,
    background: np.ndarray,
    items: list[np.ndarray],
    count: int,
    subject: np.ndarray,
) -> list[np.ndarray]:
    """``count`` segments other than the subject, without repeats while there are enough: the
    first is the background or a clutter item with even odds (so clicks on the background are
    learnt as often as clicks on stones), the rest clutter items in random order."""
    order = [items[k] for k in rng.permutation(len(items))]
    if background.any():
        order.insert(0 if rng.random() < 0.5 or not items else len(order), background)
    if not order:
        return [subject] * count
    while len(order) < count:
        order += order
    return order[:count]


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Focal (x ``FOCAL_WEIGHT``) + dice loss of each candidate: logits ... x N x H x W,
    target ... x H x W bool -> ... x N."""
    t = target.unsqueeze(-3).float().expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    alpha_t = FOCAL_ALPHA * t + (1 - FOCAL_ALPHA) * (1 - t)
    focal = (alpha_t * ce * (1 - p_t) ** FOCAL_GAMMA).mean(dim=(-2, -1))
    dice = 1 - (2 * (p * t).sum(dim=(-2, -1)) + 1) / (p.sum(dim=(-2, -1)) + t.sum(dim=(-2, -1)) + 1)
    return FOCAL_WEIGHT * focal + dice


def actual_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each candidate (logit > 0) with the target: ... x N x H x W -> ... x N."""
    pred = logits > 0
    t = target.unsqueeze(-3)
    inter = (pred & t).sum(dim=(-2, -1)).float()
    union = (pred | t).sum(dim=(-2, -1)).float()
    return inter / union.clamp(min=1)


def prompt_loss(
    model: SamModel, embeddings: torch.Tensor, target: torch.Tensor, **prompt: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, IoU of the best candidate per prompt) of one prompt kind on cached embeddings:
    the best candidate's mask loss plus the IoU head's MSE on every candidate. Every prompt
    kind trains SAM's three candidates, as the app and CLI always ask for them and take the
    best-rated one that holds the clicks (a run that trained the single-mask output for
    several clicks, as SAM's paper does, left that output flat at -0.8 logits for clicks after
    400 steps)."""
    out = model(image_embeddings=embeddings, multimask_output=True, **prompt)
    logits = out.pred_masks  # B x P x 3 x h x w; h = w = the image side (4x the grid)
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(
            logits.flatten(0, 1), target.shape[-2:], mode="bilinear", align_corners=False
        ).unflatten(0, logits.shape[:2])
    losses = mask_losses(logits, target)
    best = losses.min(dim=-1).values.mean()
    ious = actual_iou(logits.detach(), target)
    iou_loss = F.mse_loss(out.iou_scores.float(), ious)
    chosen = ious.gather(-1, losses.argmin(dim=-1, keepdim=True)).squeeze(-1)
    return best + iou_loss, chosen


def train_step(model: SamModel, data: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """Forward the three prompt kinds on one encoder pass; returns the losses and IoUs."""
    # Not get_image_embeddings: transformers runs it under no_grad (inference only).
    embeddings = model.vision_encoder(data.pixels.to(device)).last_hidden_state
    targets = data.targets.to(device)
    one_loss, one_iou = prompt_loss(
        model,
        embeddings,
        targets,
        input_points=data.one_click.to(device),
        input_labels=torch.ones(data.one_click.shape[:3], dtype=torch.long, device=device),
    )
    many_loss, many_iou = prompt_loss(
        model,
        embeddings,
        targets,
        input_points=data.clicks.to(device),
        input_labels=data.labels.to(device),
    )
    box_loss, box_iou = prompt_loss(
        model, embeddings, data.box_targets.to(device), input_boxes=data.boxes.to(device)
    )
    return {
        "loss": one_loss + many_loss + box_loss,
        "iou_one": one_iou.mean(),
        "iou_clicks": many_iou.mean(),
        "iou_box": box_iou.mean(),
    }


def _lr(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to 5% of ``peak``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def save_model(model: SamModel, processor: SamProcessor, out: Path, info: dict) -> None:
    """Write ``out`` as a SAM folder (fp16 safetensors + processor + training info), whole:
    into a sibling temporary folder first, then swapped in."""
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    half = SamModel(model.config)
    half.load_state_dict(model.state_dict())
    half.half().save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    old = out.with_name(out.name + ".old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="src/pnpsam/assets/toy_sam", help="model folder")
    parser.add_argument("--work-dir", default="toy_sam_work", help="training state (resume)")
    parser.add_argument("--steps", type=int, default=2400)
    parser.add_argument("--batch", type=int, default=24, help="images per step")
    parser.add_argument(
        "--segments", type=int, default=2, help="segments asked for per image (subject + others)"
    )
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--position-scale",
        type=float,
        default=ToySamConfig.position_scale,
        help="std of the positional Fourier features (0: transformers' init)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument(
        "--stop-after-minutes", type=float, default=None, help="save and stop after this long"
    )
    parser.add_argument(
        "--export-only", action="store_true", help="write --out from --work-dir's state, no steps"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = ToySamConfig(position_scale=args.position_scale)
    model = build_toy_sam(cfg).to(device).train()
    processor = build_toy_sam_processor(cfg)
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=args.lr,
        weight_decay=args.weight_decay,
    )
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    state_file = work / "state.pt"
    start, seconds = 0, 0.0
    if state_file.exists():
        state = torch.load(state_file, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, seconds = state["step"], state["seconds"]
        log.info("resumed at step %d", start)
    params = sum(p.numel() for p in model.parameters())
    log.info("toy SAM: %s, %d parameters", asdict(cfg), params)
    began = time.perf_counter()
    recent: list[dict[str, float]] = []
    step = start

    def save_state() -> None:
        tmp = state_file.with_suffix(".tmp")
        elapsed = seconds + time.perf_counter() - began
        state = {"model": model.state_dict(), "optimizer": opt.state_dict()}
        torch.save({**state, "step": step, "seconds": elapsed}, tmp)
        os.replace(tmp, state_file)

    while step < args.steps and not args.export_only:
        for group in opt.param_groups:
            group["lr"] = _lr(step, args.steps, args.warmup, args.lr)
        data = make_batch(step, args.batch, processor, args.seed, segments_per_image=args.segments)
        result = train_step(model, data, device)
        opt.zero_grad(set_to_none=True)
        result["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        recent.append({k: float(v) for k, v in result.items()})
        if step % args.log_every == 0 or step == args.steps:
            means = {k: np.mean([r[k] for r in recent]) for k in recent[0]}
            rate = (time.perf_counter() - began) / (step - start)
            log.info(
                "step %d/%d %.2f s/step " + " ".join(f"{k} %.4f" for k in means),
                step,
                args.steps,
                rate,
                *means.values(),
            )
            recent = []
        stop = args.stop_after_minutes is not None and (
            time.perf_counter() - began > 60 * args.stop_after_minutes
        )
        if step % args.save_every == 0 or step == args.steps or stop:
            save_state()
        if stop:
            log.info("stopping after %.1f minutes at step %d", args.stop_after_minutes, step)
            break
    info = {
        "config": asdict(cfg),
        "parameters": params,
        "steps": step,
        "batch": args.batch,
        "lr": args.lr,
        "seed": args.seed,
        "device": device.type,
        "train_seconds": round(
            seconds + (0 if args.export_only else time.perf_counter() - began), 1
        ),
    }
    save_model(model.eval(), processor, Path(args.out), info)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
