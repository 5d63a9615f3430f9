"""PnP on the shipped toy model keeps the subject's shape where sampling without injection loses it.

Fixed pairs of a cluttered toy scene and a target caption, edited with the demo's toy settings
(``pnpsam.toyworld.pairs.TOY_EDIT``: residual features at LDM output block 4 =
``up_blocks[2].resnets[0]``, 8x8 in this model, self-attention Q/K at blocks 2-7, guidance 4).
Plain PnP is compared with sampling from the inverted latent without injection and with fresh
noise, by the judge's subject mask IoU against the source's exact mask. Two pair sets:

- recolour (target changes the subject colour only): the inverted latent alone keeps much of the
  layout here, so PnP's margin over no injection is modest;
- recolour + new background: without injection the subject moves, melts or shrinks as the
  background is redrawn; PnP holds it in place (and then carries part of the old appearance,
  which is what the subject-aware modes address).

Measured (20 steps), IoU PnP / no injection / fresh noise -- on these 8 fixed pairs: recolour
0.81 / 0.60 / 0.18 (colour followed 1.0 for all three), recolour + background 0.68 / 0.59 / 0.28
(colour followed 0.62 / 0.88 / 0.88); on the 16 pairs of seed 100: recolour 0.87 / 0.76 / 0.32,
recolour + background 0.71 / 0.39 / 0.32. The background-change margin over no injection varies
a lot between pair sets of this size; the floors sit under what these fixed pairs give.
"""

from __future__ import annotations

import pytest
import torch

from pnpsam.api import PnPEditor
from pnpsam.bench.toy import run_toy_comparison
from pnpsam.config import ModelConfig
from pnpsam.methods import parse_method
from pnpsam.toyworld.pairs import TOY_MODEL, toy_pairs

_N_PAIRS, _PAIR_SEED, _STEPS = 8, 11, 20
_METHODS = {
    "pnp": "pnp",
    "no_injection": "pnp:pnp_f_t=0:pnp_attn_t=0",
    "fresh_noise": "pnp:pnp_f_t=0:pnp_attn_t=0:start=noise",
}


@pytest.fixture(scope="module")
def editor() -> PnPEditor:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    editor = PnPEditor.from_pretrained(ModelConfig(model=str(TOY_MODEL), device="cpu"))
    editor.set_progress_bar_config(disable=True)
    return editor


def _mean_scores(editor: PnPEditor, change_background: bool) -> dict[str, dict[str, float]]:
    """Method name -> mean scores (iou, color, background, shape, clutter) over the fixed pairs."""
    pairs = toy_pairs(_N_PAIRS, _PAIR_SEED, change_background=change_background)
    specs = [parse_method(text) for text in _METHODS.values()]
    rows, _ = run_toy_comparison(editor, pairs, specs, _STEPS)
    return dict(zip(_METHODS, rows, strict=True))


@pytest.fixture(scope="module")
def recolour(editor: PnPEditor) -> dict[str, dict[str, float]]:
    return _mean_scores(editor, change_background=False)


@pytest.fixture(scope="module")
def recolour_and_background(editor: PnPEditor) -> dict[str, dict[str, float]]:
    return _mean_scores(editor, change_background=True)


@pytest.mark.slow
def test_pnp_keeps_the_subject_shape_while_the_colour_follows_the_prompt(recolour) -> None:
    iou = {name: row["iou"] for name, row in recolour.items()}
    assert iou["pnp"] >= 0.7, iou
    assert iou["pnp"] >= iou["no_injection"] + 0.12, iou
    assert iou["pnp"] >= iou["fresh_noise"] + 0.5, iou
    assert recolour["pnp"]["color"] >= 0.75, recolour["pnp"]
    # The old background's clutter comes back in place with PnP (the failure the subject-aware
    # modes address), not from fresh noise.
    assert recolour["pnp"]["clutter"] >= 0.3 and recolour["fresh_noise"]["clutter"] <= 0.1


@pytest.mark.slow
def test_pnp_holds_the_subject_where_no_injection_loses_it(recolour_and_background) -> None:
    iou = {name: row["iou"] for name, row in recolour_and_background.items()}
    assert iou["pnp"] >= 0.6, iou
    assert iou["pnp"] >= iou["no_injection"] + 0.05, iou
    assert iou["pnp"] >= iou["fresh_noise"] + 0.3, iou
    # Without injection the new background is drawn; with it, part of the old one stays.
    assert recolour_and_background["no_injection"]["background"] >= 0.8


@pytest.mark.slow
def test_subject_default_frees_the_background_and_keeps_the_subject(editor: PnPEditor) -> None:
    """The subject-aware default (``subject``: background removed before inversion, injection on
    every cell the subject touches, 0.2 of it in the background) against plain PnP on the first
    4 pairs of the dev set (seed 100), colour + background targets, 20 steps. Measured: subject
    IoU 0.97 / 0.01 / 0.95 / 0.95 (mean 0.72), colour 4/4, background 4/4, clutter -0.01; PnP
    IoU mean 0.64, colour 1/4, background 2/4. Pair 1 shows the mode's failure: the subject is
    redrawn elsewhere (IoU 0.01)."""
    from pnpsam.bench.toy import TOY_SETS

    pairs = toy_pairs(4, TOY_SETS["dev"])
    rows, _ = run_toy_comparison(editor, pairs, [parse_method("subject"), parse_method("pnp")], 20)
    subject, pnp = rows
    assert subject["background"] >= 0.75 and subject["color"] >= 0.75, subject
    assert subject["background"] >= pnp["background"] + 0.25, (subject, pnp)
    assert subject["color"] >= pnp["color"] + 0.25, (subject, pnp)
    assert subject["iou"] >= 0.6 and subject["clutter"] <= 0.05, subject
