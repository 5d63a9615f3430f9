"""PnP on the shipped toy model keeps the subject's shape and follows the target colour.

Fixed source-target pairs: a cluttered toy scene and the same caption with another subject colour.
Plain PnP is compared with sampling from the inverted latent without injection and with fresh
noise, by the judge's subject mask IoU against the source's exact mask.

The toy UNet has one layer per block, so its up blocks hold 2 resnets each and the LDM output
blocks are numbered 0-7 (SD 1.5: 0-11). The paper's residual layer ``up_blocks[1].resnets[1]``
is block 3 here and runs at 4x4; block 5 (``up_blocks[2].resnets[1]``) runs at 8x8. Measured
on 16 pairs (20 steps, guidance 4): subject IoU PnP@5 0.77, PnP@3 0.72, no injection 0.73,
fresh noise 0.22; subject colour follows the target 0.69 / 0.88 / 0.88 / 0.81. So in this
model the DDIM-inverted latent alone already keeps most of the layout; injection at 8x8 adds a
little shape and costs some colour. The asserted floors are what holds on the 8 pairs below.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pnpsam.api import PnPEditor
from pnpsam.toyworld.evaluate import DEFAULT_MODEL_PATH
from pnpsam.toyworld.measure import score_edit
from pnpsam.toyworld.world import COLORS, SceneSpec, render_scene, sample_specs

_RESIDUAL_BLOCK = 5  # up_blocks[2].resnets[1], 8x8 in the toy model
_ATTENTION_BLOCKS = (2, 3, 4, 5, 6, 7)  # every self-attention of up_blocks[1..3], as the paper
_N_PAIRS, _SPEC_SEED, _RENDER_SEED, _STEPS = 8, 31337, 7_000_000, 20


def _pairs() -> list[tuple[SceneSpec, SceneSpec, int]]:
    """(source spec, target spec = same scene in the next palette colour, render seed)."""
    colors = list(COLORS)
    pairs = []
    for i, spec in enumerate(sample_specs(_N_PAIRS, seed=_SPEC_SEED, clutter_range=(8, 12))):
        target = dataclasses.replace(spec, color=colors[(colors.index(spec.color) + 1) % 6])
        pairs.append((spec, target, _RENDER_SEED + i))
    return pairs


@pytest.fixture(scope="module")
def method_scores() -> dict[str, list]:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    editor = PnPEditor.from_pretrained(str(DEFAULT_MODEL_PATH), device="cpu")
    config = editor.default_config()
    config.pnp = dataclasses.replace(
        config.pnp,
        steps=_STEPS,
        guidance=4.0,  # the toy model's best text-to-image guidance
        negative_prompt="",  # SD's long negative prompt is out of the toy vocabulary
        residual_blocks=(_RESIDUAL_BLOCK,),
        attention_blocks=_ATTENTION_BLOCKS,
    )
    config.inversion = dataclasses.replace(config.inversion, steps=_STEPS)
    methods = {
        "pnp": {},
        "no_injection": {"pnp_f_t": 0.0, "pnp_attn_t": 0.0},
        "fresh_noise": {"pnp_f_t": 0.0, "pnp_attn_t": 0.0, "start": "noise"},
    }
    scores: dict[str, list] = {name: [] for name in methods}
    for source_spec, target, seed in _pairs():
        source = render_scene(source_spec, seed)
        inversion = editor.invert(source.image, config)
        for name, overrides in methods.items():
            result = editor.edit(inversion, target.caption, config, **overrides)
            output = np.asarray(result.images[0])
            scores[name].append(score_edit(source, target, output))
    return scores


def _mean(values) -> float:
    return float(np.mean(list(values)))


@pytest.mark.slow
def test_pnp_keeps_the_subject_shape_better_than_the_baselines(method_scores) -> None:
    iou = {name: _mean(s.subject_iou for s in runs) for name, runs in method_scores.items()}
    # Measured: pnp 0.78, no_injection 0.72, fresh_noise 0.17.
    assert iou["pnp"] >= 0.7, iou
    assert iou["pnp"] >= iou["no_injection"] + 0.03, iou
    assert iou["pnp"] >= iou["fresh_noise"] + 0.4, iou


@pytest.mark.slow
def test_pnp_follows_the_target_colour_and_keeps_the_old_clutter(method_scores) -> None:
    """Colour follows the prompt; the source's background clutter comes back with PnP (the
    failure the subject-aware modes address) but not from fresh noise."""
    follows = _mean(s.color_follows for s in method_scores["pnp"])
    assert follows >= 0.5, follows  # measured 0.62 (no injection: 0.75)
    clutter = {name: _mean(s.clutter_survival for s in r) for name, r in method_scores.items()}
    assert clutter["pnp"] >= 0.2 and clutter["fresh_noise"] <= 0.1, clutter
