"""Issue-11 experiments the demo cannot express (toy model, CPU, 20 steps, seeded pairs).

    python benchmarks/research/issue11.py words SET KIND PAIRS SPEC,... WORDS,...
    python benchmarks/research/issue11.py two-pass SET KIND PAIRS PASS1 PASS2,...
    python benchmarks/research/issue11.py agreement SET PAIRS

SET is dev or held-out, KIND bg (colour + background targets) or col (colour only).
``words``: the toy comparison with per-pair ``pnp.subject_words`` (none, shape, colour-shape of
the target). ``two-pass``: pass 1 edits with a free background; its background replaces the
source's around the subject; pass 2 runs on that composite. ``agreement``: a diffusion-classifier
test of whether the target prompt describes the source's background (background denoising
error with the target prompt / unconditional), printed per pair for both kinds.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.bench.toy import TOY_SETS, toy_base_config
from pnpsam.config import EditConfig, ModelConfig
from pnpsam.methods import parse_method, run_method
from pnpsam.toyworld.pairs import ToyPair, score_toy_edit, toy_pairs

SHOWN = ("iou", "color", "background", "clutter")


def _setup(set_name: str, kind: str, count: int) -> tuple[PnPEditor, list[ToyPair], EditConfig]:
    warnings.simplefilter("ignore")
    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    editor.set_progress_bar_config(disable=True)
    pairs = toy_pairs(count, seed=TOY_SETS[set_name], change_background=kind == "bg")
    return editor, pairs, toy_base_config(editor, 20)


def _edit(
    editor: PnPEditor, spec: str, config: EditConfig, pair: ToyPair, image: np.ndarray
) -> np.ndarray:
    method = parse_method(spec)
    mask = pair.subject.astype(np.float32)
    output = run_method(method, editor, Image.fromarray(image), mask, [pair.target.caption], config)
    return np.asarray(output.images[0].convert("RGB"))


def _report(label: str, scores: list[dict[str, float]]) -> None:
    means = {key: round(float(np.mean([s[key] for s in scores])), 3) for key in SHOWN}
    print(label, means, "per-pair iou", [round(s["iou"], 2) for s in scores], flush=True)


def words(set_name: str, kind: str, count: str, specs: str, modes: str) -> None:
    editor, pairs, base = _setup(set_name, kind, int(count))
    for spec, mode in zip(specs.split(","), modes.split(","), strict=True):
        config = parse_method(spec).edit_config(base)
        scores = []
        for pair in pairs:
            chosen = {"none": "", "shape": pair.target.shape}
            chosen["colour-shape"] = f"{pair.target.color} {pair.target.shape}"
            per_pair = dataclasses.replace(
                config, pnp=dataclasses.replace(config.pnp, subject_words=chosen[mode])
            )
            scores.append(score_toy_edit(pair, _edit(editor, spec, per_pair, pair, pair.image)))
        _report(f"{spec} words={mode}", scores)


def two_pass(set_name: str, kind: str, count: str, first: str, seconds: str) -> None:
    editor, pairs, base = _setup(set_name, kind, int(count))
    first_config = parse_method(first).edit_config(base)
    backgrounds = [_edit(editor, first, first_config, pair, pair.image) for pair in pairs]
    for spec in seconds.split(","):
        config = parse_method(spec).edit_config(base)
        scores = []
        for pair, background in zip(pairs, backgrounds, strict=True):
            composite = np.where(pair.subject[..., None], pair.image, background).astype(np.uint8)
            scores.append(score_toy_edit(pair, _edit(editor, spec, config, pair, composite)))
        _report(f"two-pass {first} -> {spec}", scores)


@torch.no_grad()
def agreement(set_name: str, count: str) -> None:
    for kind in ("col", "bg"):
        editor, pairs, _ = _setup(set_name, kind, int(count))
        pipe = editor.pipeline
        train_steps = pipe.scheduler.config.num_train_timesteps
        ratios = []
        for pair in pairs:
            image = torch.from_numpy(pair.image).permute(2, 0, 1)[None].float() / 127.5 - 1
            clean = pipe.encode_image(image)
            subject = torch.from_numpy(pair.subject.astype(np.float32))[None, None]
            background = 1 - F.interpolate(subject, size=clean.shape[-2:], mode="area")
            text = torch.cat([pipe.encode_text([pair.target.caption]), pipe.encode_text([""])])
            errors = torch.zeros(2)
            generator = torch.Generator().manual_seed(0)
            for fraction in (0.3, 0.5, 0.7):
                t = torch.tensor([int(fraction * train_steps)])
                for _ in range(2):
                    noise = torch.randn(clean.shape, generator=generator)
                    noisy = pipe.scheduler.add_noise(clean, noise, t)
                    predicted = pipe.unet(torch.cat([noisy, noisy]), t, text).sample
                    errors += ((predicted - noise) ** 2 * background).sum((1, 2, 3))
            ratios.append(float(errors[0] / errors[1]))
        print(kind, " ".join(f"{r:.2f}" for r in ratios), flush=True)


if __name__ == "__main__":
    commands: dict[str, Callable[..., None]] = {
        "words": words,
        "two-pass": two_pass,
        "agreement": agreement,
    }
    commands[sys.argv[1]](*sys.argv[2:])
