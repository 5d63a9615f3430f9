"""Toy-world measurements: IoU, label accuracy, subject colour, clutter survival; latent folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pnpsam.toyworld.measure import (
    clutter_survival,
    label_accuracy,
    mean_iou,
    score_edit,
    subject_color,
    subject_iou,
)
from pnpsam.toyworld.model import ToyModelConfig, build_vae, fold_latent_stats
from pnpsam.toyworld.world import BACKGROUNDS, COLORS, SceneSpec, render, render_scene


def test_subject_iou_values() -> None:
    a = np.zeros((8, 8), dtype=bool)
    b = np.zeros((8, 8), dtype=bool)
    a[:4, :4] = True  # 16 px
    b[2:6, :4] = True  # 16 px, 8 shared
    assert subject_iou(a, a) == 1.0
    assert subject_iou(a, b) == pytest.approx(8 / 24)
    assert subject_iou(a, ~a) == 0.0
    assert subject_iou(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert mean_iou([a, a], [a, b]) == pytest.approx((1 + 8 / 24) / 2)
    with pytest.raises(ValueError, match=r"\(8, 8\) and \(4, 4\)"):
        subject_iou(a, np.zeros((4, 4), dtype=bool))


def test_label_accuracy_counts_each_label_and_all_three() -> None:
    truth = [SceneSpec("red", "circle", "sea"), SceneSpec("blue", "square", "snow")]
    predicted = [SceneSpec("red", "circle", "sea"), SceneSpec("blue", "triangle", "snow")]
    scores = label_accuracy(predicted, truth)
    assert scores == {"color": 1.0, "shape": 0.5, "background": 1.0, "all": 0.5}
    with pytest.raises(ValueError, match="1 vs 2"):
        label_accuracy(predicted[:1], truth)


@pytest.mark.parametrize("background", BACKGROUNDS)
def test_subject_color_reads_every_palette_colour_even_blurred(background: str) -> None:
    import cv2

    for color in COLORS:
        image, mask = render(SceneSpec(color, "circle", background, clutter=10), seed=2)
        assert subject_color(image, mask) == color
        blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=1.5)
        assert subject_color(blurred, mask) == color


def test_clutter_survival_separates_kept_from_new_clutter() -> None:
    for background in BACKGROUNDS:
        spec = SceneSpec("yellow", "square", background, clutter=12)
        source = render_scene(spec, seed=7)
        other = render_scene(spec, seed=8)  # same scene, clutter elsewhere
        plain = render_scene(SceneSpec("yellow", "square", background, clutter=0), seed=7)
        exclude = source.subject_mask
        kept = clutter_survival(source.clutter_mask, source.image, exclude)
        moved = clutter_survival(source.clutter_mask, other.image, exclude)
        gone = clutter_survival(source.clutter_mask, plain.image, exclude)
        assert kept > 0.4, (background, kept)
        assert abs(moved) < 0.15 and abs(gone) < 0.15, (background, moved, gone)


def test_fold_latent_stats_normalises_latents_without_changing_decoding() -> None:
    torch.manual_seed(0)
    vae = build_vae(ToyModelConfig()).eval()
    images = np.stack(
        [render(SceneSpec(c, "circle", "grass"), seed=i)[0] for i, c in enumerate(COLORS)]
    )
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        before = vae.encode(x).latent_dist
        decoded_before = vae.decode(before.mean).sample
        mean, std = before.mean.mean(dim=(0, 2, 3)), before.mean.std(dim=(0, 2, 3))
        fold_latent_stats(vae, mean, std)
        after = vae.encode(x).latent_dist
        decoded_after = vae.decode(after.mean).sample
    assert torch.allclose(after.mean.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(after.mean.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)
    assert torch.allclose(after.std, before.std / std[None, :, None, None], rtol=1e-4)
    assert torch.allclose(decoded_after, decoded_before, atol=1e-4)
    assert vae.config.scaling_factor == 1.0


def test_score_edit_on_a_perfect_and_a_failed_edit() -> None:
    source = render_scene(SceneSpec("red", "circle", "grass", clutter=12), seed=3)
    target = SceneSpec("blue", "circle", "snow")
    # A perfect edit: same geometry, target colour and background, fresh clutter.
    perfect = render_scene(SceneSpec("blue", "circle", "snow", clutter=12), seed=99).image
    scores = score_edit(source, target, perfect)
    assert scores.subject_iou > 0.97
    assert scores.color_follows and scores.background_follows and scores.shape_kept
    assert abs(scores.clutter_survival) < 0.15
    # A failed edit: the source returned unchanged keeps its clutter and ignores the text.
    failed = score_edit(source, target, source.image)
    assert not failed.color_follows and not failed.background_follows
    assert failed.clutter_survival > 0.4
    with pytest.raises(ValueError, match=r"\(32, 32, 3\)"):
        score_edit(source, target, np.zeros((32, 32, 3), dtype=np.uint8))
