"""All metrics together, with the subject / background split, on tiny local models."""

from __future__ import annotations

import numpy as np
import pytest
from metrics_fixtures import photo, save_tiny_clip, save_tiny_dino, save_tiny_resnet

from pnpsam.metrics import (
    ClipScoreConfig,
    EditMetrics,
    EditMetricsConfig,
    LpipsConfig,
    StructureDistanceConfig,
)


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    config = EditMetricsConfig(
        structure=StructureDistanceConfig(
            model_id=str(save_tiny_dino(tmp_path_factory.mktemp("dino"))), resize=64
        ),
        clip=ClipScoreConfig(model_id=str(save_tiny_clip(tmp_path_factory.mktemp("clip")))),
        lpips=LpipsConfig(
            backend="transformers",
            backbone_id=str(save_tiny_resnet(tmp_path_factory.mktemp("resnet"))),
        ),
    )
    return EditMetrics.from_pretrained(config, local_files_only=True)


def test_background_only_edit_keeps_the_subject_scores(metrics):
    source = photo(64)
    subject = np.zeros((64, 64), dtype=bool)
    subject[8:56, 16:48] = True
    output = np.where(subject[..., None], source, photo(64, "coffee"))  # new background
    prompt = "a photo of a cat"
    edited, untouched = metrics.evaluate(
        [source, source], [output, source], [prompt, prompt], [subject, None], [subject, None]
    )
    assert edited["structure_subject"] == 0.0
    assert edited["structure_background"] > 0.0
    assert edited["structure"] > 0.0
    assert edited["clip_subject"] == metrics.clip([source], [prompt], [subject]).item()
    assert edited["clip_edited"] == edited["clip_subject"]  # same mask given as edit mask
    assert edited["mse_bg"] > 0.0 and edited["lpips_unweighted_bg"] > 0.0
    assert set(untouched) == {"structure", "clip_whole"}  # no masks: no split, no background
    assert untouched["structure"] == 0.0


def test_subject_only_edit_preserves_the_background(metrics):
    source = photo(64)
    edit = np.zeros((64, 64), dtype=np.float32)
    edit[16:48, 16:48] = 1.0
    output = np.where(edit[..., None] > 0, photo(64, "chelsea"), source)
    (row,) = metrics.evaluate([source], [output], ["a cat"], edit_masks=[edit])
    assert row["mse_bg"] == 0.0 and row["lpips_unweighted_bg"] == 0.0
    assert row["ssim_bg"] == pytest.approx(1.0)
    assert row["psnr_bg"] == float("inf")


def test_metrics_can_be_switched_off():
    metrics = EditMetrics.from_pretrained(
        EditMetricsConfig(use_structure=False, use_clip=False, use_lpips=False)
    )
    edit = np.ones((16, 16), dtype=bool)
    edit[4:8] = False
    image = photo(16)
    (row,) = metrics.evaluate([image], [image], ["x"], edit_masks=[edit])
    assert set(row) == {"psnr_bg", "ssim_bg", "mse_bg"}


def test_mismatched_lengths_are_rejected(metrics):
    with pytest.raises(ValueError, match="2 sources, 1 outputs"):
        metrics.evaluate([photo(16)] * 2, [photo(16)], ["a", "b"])
    with pytest.raises(ValueError, match="1 subject_masks for 2 images"):
        metrics.evaluate([photo(16)] * 2, [photo(16)] * 2, ["a", "b"], [None])
