"""Toy SAM vs GrabCut on held-out toy renders, and what the mask does to the edit.

    OMP_NUM_THREADS=1 python benchmarks/toy_sam_quality.py masks [--renders 96]
    OMP_NUM_THREADS=1 python benchmarks/toy_sam_quality.py edits [--pairs 16] [--steps 20]

``masks``: mask IoU against the render's exact subject mask for four prompts per render (one
click at the subject's most interior pixel, one click anywhere on it, three clicks = two on it
and one "not this" on the nearest clutter, the tight box), each through the shipped toy SAM
(``--sam-model toy``: the candidate with the best predicted IoU among those holding the
clicks, as the app and CLI choose) and
through the GrabCut fallback; mean [bootstrap 95% interval], the worst renders of each, and how
often SAM is more than 0.05 below GrabCut on the same render. Then a click on each render's
largest stone (does the answer follow the click, or is it the salient subject?) and clicks on
the background: how many selections are flagged as doubtful (``pnpsam.masks.doubtful_selection``).

``edits``: the subject-aware default (``bench`` method ``subject``) on held-out toy pairs with
the subject mask from the ground truth, from one click through the toy SAM, and from the same
click through GrabCut; shape IoU / colour / background / clutter as ``pnpsam demo`` scores them.

The renders are the sources of ``toy_pairs(n, seed=500)`` (``--set held-out``): render seeds
500000 + i, which the toy SAM never saw (its training renders start at 10**9).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from pnpsam.bench.report import bootstrap_ci
from pnpsam.bench.toy import TOY_SETS
from pnpsam.masks import (
    MaskConfig,
    MaskMaker,
    doubtful_selection,
    grabcut_from_prompts,
    largest_component,
)
from pnpsam.toyworld.pairs import ToyPair, toy_pairs
from pnpsam.toyworld.prompts import (
    background_click,
    box_of,
    centre_click,
    negative_click,
    random_click,
)

PROMPTS = ("one click (centre)", "one click (anywhere)", "three clicks", "box")


def prompt_config(pair: ToyPair, kind: str, index: int) -> MaskConfig:
    """The clicks/box of prompt ``kind`` for a render (seeded by its index)."""
    rng = np.random.default_rng([20, index])
    subject, clutter = pair.subject, pair.clutter
    if kind == "one click (centre)":
        return MaskConfig(points=[centre_click(subject)])
    if kind == "one click (anywhere)":
        return MaskConfig(points=[random_click(subject, rng)])
    if kind == "three clicks":
        points = [random_click(subject, rng), random_click(subject, rng)]
        return MaskConfig(points=points, neg_points=[negative_click(subject, clutter)])
    return MaskConfig(box=box_of(subject))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))


def sam_mask(maker: MaskMaker, image: np.ndarray, cfg: MaskConfig, model: str) -> np.ndarray:
    """SAM's candidate with the best predicted IoU, as ``MaskMaker`` picks it (before the mask
    tools and the coverage check, which would refuse an all-subject mask)."""
    segmenter = maker.sam(model)
    segmenter.set_image(image)
    labels = [1] * len(cfg.points) + [0] * len(cfg.neg_points)
    prediction = segmenter.predict([*cfg.points, *cfg.neg_points], labels, cfg.box)
    return prediction.select(prediction.best_index_for(cfg.points)).astype(np.float32)


def grabcut_mask(image: np.ndarray, cfg: MaskConfig) -> np.ndarray:
    return grabcut_from_prompts(image, cfg.points, cfg.neg_points, cfg.box)


def _interval(values: list[float]) -> str:
    e = bootstrap_ci(values)
    return f"{e.mean:.3f} [{e.low:.3f}, {e.high:.3f}]"


def masks(renders: int, model: str) -> None:
    pairs = toy_pairs(renders, seed=TOY_SETS["held-out"])
    maker = MaskMaker()
    scores: dict[tuple[str, str], list[float]] = {}
    seconds = {"toy SAM": 0.0, "GrabCut": 0.0}
    for index, pair in enumerate(pairs):
        for kind in PROMPTS:
            started = time.perf_counter()
            sam = sam_mask(maker, pair.image, prompt_config(pair, kind, index), model)
            seconds["toy SAM"] += time.perf_counter() - started
            started = time.perf_counter()
            grab = grabcut_mask(pair.image, prompt_config(pair, kind, index))
            seconds["GrabCut"] += time.perf_counter() - started
            scores.setdefault((kind, "toy SAM"), []).append(iou(sam, pair.subject))
            scores.setdefault((kind, "GrabCut"), []).append(iou(grab, pair.subject))
    print(
        f"Mask IoU with the exact subject mask, {renders} held-out toy renders (toy_pairs seed "
        f"{TOY_SETS['held-out']}); mean [bootstrap 95% interval]; SAM = {model}\n"
    )
    print("| prompt | toy SAM | GrabCut | SAM - GrabCut | renders SAM < GrabCut - 0.05 |")
    print("|---|---|---|---|---|")
    for kind in PROMPTS:
        sam, grab = scores[(kind, "toy SAM")], scores[(kind, "GrabCut")]
        diff = [s - g for s, g in zip(sam, grab, strict=True)]
        worse = sum(d < -0.05 for d in diff)
        print(
            f"| {kind} | {_interval(sam)} | {_interval(grab)} | {_interval(diff)} | "
            f"{worse} / {renders} |"
        )
    print("\nWorst renders (index: IoU, caption):\n")
    for kind in PROMPTS:
        for method in ("toy SAM", "GrabCut"):
            values = scores[(kind, method)]
            worst = np.argsort(values)[:3]
            cells = ", ".join(f"{i}: {values[i]:.3f} ({pairs[i].source.caption})" for i in worst)
            print(f"- {kind}, {method}: {cells}")
    for kind in PROMPTS:
        sam, grab = scores[(kind, "toy SAM")], scores[(kind, "GrabCut")]
        gap = int(np.argmin(np.subtract(sam, grab)))
        print(
            f"- {kind}, largest SAM deficit: render {gap} SAM {sam[gap]:.3f} vs GrabCut "
            f"{grab[gap]:.3f} ({pairs[gap].source.caption})"
        )
    calls = renders * len(PROMPTS)
    print(
        f"\nTime per mask (median machine load, shared 2 cores): toy SAM "
        f"{1000 * seconds['toy SAM'] / calls:.1f} ms (image encoder included), GrabCut "
        f"{1000 * seconds['GrabCut'] / calls:.1f} ms"
    )
    stone_sam, stone_grab, stone_flagged = [], [], 0
    for pair in pairs:  # a click on the largest stone: is the answer that stone?
        stone = largest_component(pair.clutter) > 0.5
        if not stone.any():
            continue
        cfg = MaskConfig(points=[centre_click(stone)])
        answer = sam_mask(maker, pair.image, cfg, model)
        stone_sam.append(iou(answer, stone))
        stone_flagged += doubtful_selection(answer, clicks=cfg.points) is not None
        stone_grab.append(iou(grabcut_mask(pair.image, cfg), stone))
    print(
        f"A click on the largest stone (clutter item), IoU with that stone, {len(stone_sam)} "
        f"renders: toy SAM {_interval(stone_sam)}, GrabCut {_interval(stone_grab)}; toy SAM "
        f"selections flagged as doubtful (a mask without the click, under 1% or the "
        f"background): {stone_flagged} / {len(stone_sam)}"
    )
    flagged, fractions = 0, []
    for pair in pairs:
        cfg = MaskConfig(points=[background_click(pair.subject, pair.clutter)])
        mask = sam_mask(maker, pair.image, cfg, model)
        fractions.append(float((mask > 0.5).mean()))
        flagged += doubtful_selection(mask) is not None
    print(
        f"Clicks on the background (the free pixel farthest from subject and clutter): "
        f"{flagged} / {renders} selections flagged as doubtful; selected fraction median "
        f"{np.median(fractions):.2f}"
    )


def edits(count: int, steps: int, model: str) -> None:
    from PIL import Image

    from pnpsam.api import PnPEditor
    from pnpsam.bench.toy import toy_base_config, toy_summary
    from pnpsam.config import ModelConfig
    from pnpsam.methods import parse_method, run_method
    from pnpsam.toyworld.pairs import score_toy_edit

    warnings.simplefilter("ignore")
    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    pairs = toy_pairs(count, seed=TOY_SETS["held-out"])
    base = toy_base_config(editor, steps)
    method = parse_method("subject")
    config = method.edit_config(base)
    maker = MaskMaker()
    rows: dict[str, list[dict[str, float]]] = {}
    mask_iou: dict[str, list[float]] = {}
    started = time.perf_counter()
    for index, pair in enumerate(pairs):
        click = prompt_config(pair, "one click (centre)", index)
        sources = {
            "ground truth": pair.subject.astype(np.float32),
            "toy SAM, 1 click": sam_mask(maker, pair.image, click, model),
            "GrabCut, 1 click": grabcut_mask(pair.image, click),
        }
        for name, mask in sources.items():
            out = run_method(
                method, editor, Image.fromarray(pair.image), mask, [pair.target.caption], config
            )
            output = np.asarray(out.images[0].convert("RGB"))
            rows.setdefault(name, []).append(score_toy_edit(pair, output))
            mask_iou.setdefault(name, []).append(iou(mask, pair.subject))
        print(f"pair {index + 1}/{count} {time.perf_counter() - started:.0f} s", flush=True)
    summary = toy_summary(
        [{"method": n, "spec": n, "per_pair": r} for n, r in rows.items()], "ground truth"
    )
    print(
        f"\nSubject-aware default on {count} held-out toy pairs (colour + background targets), "
        f"{steps} steps; mean [bootstrap 95% interval]; Δ = paired difference to the "
        "ground-truth mask\n"
    )
    print("| mask | mask IoU | shape IoU | colour | background | clutter back | Δ shape IoU |")
    print("|---|---|---|---|---|---|---|")
    for row in summary:
        name = row["method"]
        cells = [_interval(mask_iou[name])]
        for key in ("iou", "color", "background", "clutter"):
            cells.append(_interval([s[key] for s in row["per_pair"]]))
        d = row.get("diff", {}).get("iou")
        delta = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-"
        print(f"| {name} | " + " | ".join(cells) + f" | {delta} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("masks")
    m.add_argument("--renders", type=int, default=96)
    m.add_argument("--sam-model", default="toy")
    e = sub.add_parser("edits")
    e.add_argument("--pairs", type=int, default=16)
    e.add_argument("--steps", type=int, default=20)
    e.add_argument("--sam-model", default="toy")
    args = parser.parse_args()
    if args.command == "masks":
        masks(args.renders, args.sam_model)
    else:
        edits(args.pairs, args.steps, args.sam_model)


if __name__ == "__main__":
    main()
