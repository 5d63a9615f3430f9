"""The shipped toy-world SAM: clicks on toy renders give the subject, through the real loader.

Renders here use seeds the toy SAM never trained on (its training seeds start at 10**9).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from masks_fixtures import iou
from PIL import Image

from pnpsam.config import config_for_model
from pnpsam.masks import (
    TOY_SAM_DIR,
    DoubtfulMaskWarning,
    MaskConfig,
    MaskMaker,
    SamPointSegmenter,
    SamUnavailableWarning,
    doubtful_selection,
)
from pnpsam.toyworld.prompts import background_click, box_of, centre_click
from pnpsam.toyworld.world import SHAPES, RenderedScene, SceneSpec, render_scene

FIXED_SEED = 3_000_000  # render seeds of this file's scenes: never trained on


def scene(shape: str, index: int, **spec: object) -> RenderedScene:
    colors = ("red", "blue", "yellow", "purple")
    backgrounds = ("grass", "snow", "sea", "desert", "night")
    base = SceneSpec(
        color=colors[index % len(colors)],
        shape=shape,
        background=backgrounds[index % len(backgrounds)],
        center=(0.45 + 0.05 * (index % 3), 0.5),
        size=0.2,
        clutter=10,
    )
    return render_scene(dataclasses.replace(base, **spec), FIXED_SEED + index)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def toy_sam() -> SamPointSegmenter:
    return SamPointSegmenter.from_pretrained("toy", local_files_only=True)


def test_shipped_folder_is_a_small_fp16_sam_with_its_processor(toy_sam: SamPointSegmenter) -> None:
    weights = TOY_SAM_DIR / "model.safetensors"
    assert weights.stat().st_size <= 8 * 1024**2
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as tensors:
        dtypes = {tensors.get_tensor(name).dtype for name in tensors.keys()}  # noqa: SIM118
    assert dtypes == {torch.float16}
    assert toy_sam.family == "sam"
    config = json.loads((TOY_SAM_DIR / "config.json").read_text())
    assert config["vision_config"]["image_size"] == 64
    # The processor is the toy's: 64 px in, masks at the decoder's 64 px.
    processed = toy_sam.processor(images=np.zeros((64, 64, 3), np.uint8), return_tensors="pt")
    assert tuple(processed["pixel_values"].shape) == (1, 3, 64, 64)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_click_on_each_shape_selects_it(toy_sam: SamPointSegmenter, shape: str) -> None:
    for index in range(3):
        rendered = scene(shape, index)
        toy_sam.set_image(rendered.image)
        mask = toy_sam.predict([centre_click(rendered.subject_mask)], [1]).select()
        assert iou(mask, rendered.subject_mask) >= 0.85, (shape, index)


def test_a_box_selects_the_subject(toy_sam: SamPointSegmenter) -> None:
    for index, shape in enumerate(SHAPES):
        rendered = scene(shape, index + 5)
        toy_sam.set_image(rendered.image)
        mask = toy_sam.predict(box=box_of(rendered.subject_mask)).select()
        assert iou(mask, rendered.subject_mask) >= 0.85, shape


def test_candidates_are_ranked_by_predicted_iou(toy_sam: SamPointSegmenter) -> None:
    """The candidate SAM rates best is the one that really is best (within 0.02), and its
    predicted IoU is close to the real one."""
    for index, shape in enumerate(SHAPES * 2):
        rendered = scene(shape, index + 10)
        toy_sam.set_image(rendered.image)
        prediction = toy_sam.predict([centre_click(rendered.subject_mask)], [1])
        assert prediction.masks.shape == (3, 64, 64)
        actual = np.array([iou(m, rendered.subject_mask) for m in prediction.masks])
        best = prediction.best_index
        assert actual[best] >= actual.max() - 0.02, (shape, actual, prediction.iou_scores)
        assert abs(float(prediction.iou_scores[best]) - actual[best]) < 0.15


def test_coordinates_round_trip_through_the_processor(toy_sam: SamPointSegmenter) -> None:
    """A 2.5x enlarged, non-square render: clicks are mapped into the 64 px model input like
    the processor maps them, and the mask comes back at the photo's size, on the subject."""
    rendered = scene("circle", 20, center=(0.4, 0.55))
    big = np.asarray(Image.fromarray(rendered.image).resize((160, 160), Image.NEAREST))
    photo = np.ascontiguousarray(big[:, :120])  # 160 rows x 120 columns
    subject = Image.fromarray(rendered.subject_mask).resize((160, 160), Image.NEAREST)
    truth = np.asarray(subject)[:, :120]
    toy_sam.set_image(photo)
    x, y = centre_click(truth)
    reference = toy_sam.processor(images=photo, input_points=[[[[x, y]]]], return_tensors="pt")
    mapped = toy_sam.to_model_coords(np.array([[x, y]]))
    assert np.allclose(mapped, reference["input_points"][0, 0].numpy())
    assert np.allclose(mapped * [120 / 48, 160 / 64], [[x, y]])  # longest side 160 -> 64
    mask = toy_sam.predict([(x, y)], [1]).select()
    assert mask.shape == (160, 120)
    assert iou(mask, truth) >= 0.85


def test_toy_model_clicks_go_through_the_toy_sam() -> None:
    """``--model toy`` names the toy SAM in its settings; a user's own SAM wins over it."""
    cfg = config_for_model("toy")
    assert cfg.mask.sam_model == "toy"
    rendered = scene("triangle", 30)
    mask_cfg = dataclasses.replace(cfg.mask, points=[centre_click(rendered.subject_mask)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamUnavailableWarning)
        made = MaskMaker(local_files_only=True).make(rendered.image, mask_cfg)
    assert made is not None and made.method == "sam" and made.details["sam_model"] == "toy"
    assert iou(made.mask, rendered.subject_mask) >= 0.85
    assert config_for_model("stable-diffusion-v1-5/stable-diffusion-v1-5").mask.sam_model == (
        "facebook/sam-vit-base"
    )


def test_missing_sam_still_falls_back_to_grabcut_with_the_warning(tmp_path: Path) -> None:
    rendered = scene("square", 31)
    cfg = MaskConfig(points=[centre_click(rendered.subject_mask)], sam_model=str(tmp_path / "x"))
    with pytest.warns(SamUnavailableWarning, match="GrabCut"):
        made = MaskMaker(local_files_only=True).make(rendered.image, cfg)
    assert made is not None and made.method == "grabcut"


def test_a_click_on_the_background_is_answered_with_a_warning() -> None:
    maker = MaskMaker(local_files_only=True)
    for index, shape in enumerate(SHAPES):
        rendered = scene(shape, 40 + index)
        click = background_click(rendered.subject_mask, rendered.clutter_mask)
        cfg = MaskConfig(points=[click], sam_model="toy", max_coverage=1.0)
        with pytest.warns(DoubtfulMaskWarning, match="probably"):
            made = maker.make(rendered.image, cfg)
        assert made is not None and "probably" in made.details["doubt"]
        assert iou(made.mask, rendered.subject_mask) < 0.5  # not silently the subject either
    subject_cfg = MaskConfig(points=[centre_click(rendered.subject_mask)], sam_model="toy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DoubtfulMaskWarning)
        assert maker.make(rendered.image, subject_cfg) is not None


def test_doubtful_selection_thresholds() -> None:
    mask = np.zeros((100, 100), np.float32)
    mask[40:45, 40:45] = 1  # 0.25%
    assert "less than 1%" in str(doubtful_selection(mask))
    mask[20:60, 20:60] = 1  # 16%, inside
    assert doubtful_selection(mask) is None
    everything = np.ones((100, 100), np.float32)
    everything[:3, :3] = 0
    assert "more than 90%" in str(doubtful_selection(everything))
    frame = np.ones((100, 100), np.float32)
    frame[10:90, 10:90] = 0  # 36%, but it is the image's border
    assert "four image edges" in str(doubtful_selection(frame))
