"""The shipped toy-world SAM (``--sam-model toy``), loaded through the real loader.

Renders here use seeds the toy SAM never trained on (its training seeds start at 10**9); the
measured quality on held-out renders is benchmarks/toy_sam_quality.py's (README).
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

from pnpsam.masks import (
    TOY_SAM_DIR,
    DoubtfulMaskWarning,
    MaskConfig,
    MaskMaker,
    SamPointSegmenter,
    SamUnavailableWarning,
    doubtful_selection,
    largest_component,
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
    """The candidate SAM rates best is the one that really is best (within 0.02)."""
    for index, shape in enumerate(SHAPES * 2):
        rendered = scene(shape, index + 10)
        toy_sam.set_image(rendered.image)
        prediction = toy_sam.predict([centre_click(rendered.subject_mask)], [1])
        assert prediction.masks.shape == (3, 64, 64)
        actual = np.array([iou(m, rendered.subject_mask) for m in prediction.masks])
        best = prediction.best_index
        assert actual[best] >= actual.max() - 0.02, (shape, actual, prediction.iou_scores)


def test_coordinates_round_trip_through_the_processor(toy_sam: SamPointSegmenter) -> None:
    """A 2.5x enlarged, non-square crop of a render: clicks are mapped into the 64 px model
    input as the processor maps them, and the mask comes back at the photo's size, where the
    render's own mask (enlarged the same way) lies."""
    rendered = scene("circle", 20, center=(0.4, 0.55))
    toy_sam.set_image(rendered.image)
    x, y = centre_click(rendered.subject_mask)
    small = toy_sam.predict([(x, y)], [1]).select()
    big = np.asarray(Image.fromarray(rendered.image).resize((160, 160), Image.NEAREST))
    photo = np.ascontiguousarray(big[:, :120])  # 160 rows x 120 columns
    click = (x * 2.5 + 1.0, y * 2.5 + 1.0)  # the same pixel, enlarged
    toy_sam.set_image(photo)
    reference = toy_sam.processor(images=photo, input_points=[[[click]]], return_tensors="pt")
    mapped = toy_sam.to_model_coords(np.array([click]))
    assert np.allclose(mapped, reference["input_points"][0, 0].numpy())
    assert np.allclose(mapped * 2.5, [click])  # longest side 160 -> 64
    mask = toy_sam.predict([click], [1]).select()
    assert mask.shape == (160, 120)
    enlarged = np.asarray(Image.fromarray(small).resize((160, 160), Image.NEAREST))[:, :120]
    assert iou(mask, enlarged) >= 0.85  # the processor resamples the photo: edges move


def test_the_toy_alias_loads_the_shipped_sam() -> None:
    """``--sam-model toy`` clicks go through the shipped SAM, not the GrabCut fallback."""
    rendered = scene("triangle", 30)
    cfg = MaskConfig(points=[centre_click(rendered.subject_mask)], sam_model="toy")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamUnavailableWarning)
        made = MaskMaker(local_files_only=True).make(rendered.image, cfg)
    assert made is not None and made.method == "sam" and made.details["sam_model"] == "toy"
    assert len(made.scores) == 3 and made.chosen_index == int(np.argmax(made.scores))


def test_missing_sam_still_falls_back_to_grabcut_with_the_warning(tmp_path: Path) -> None:
    rendered = scene("square", 31)
    cfg = MaskConfig(points=[centre_click(rendered.subject_mask)], sam_model=str(tmp_path / "x"))
    with pytest.warns(SamUnavailableWarning, match="GrabCut"):
        made = MaskMaker(local_files_only=True).make(rendered.image, cfg)
    assert made is not None and made.method == "grabcut"


def test_a_click_on_a_speck_of_clutter_is_answered_with_a_warning(tmp_path: Path) -> None:
    """Without SAM (GrabCut), a click on a star gave a 0.6% "subject" silently; now the mask
    comes back with a warning saying why it is doubtful."""
    rendered = scene("circle", 50, background="night", color="red")
    rows, cols = np.nonzero(rendered.clutter_mask)
    cfg = MaskConfig(points=[(float(cols[0]), float(rows[0]))], sam_model=str(tmp_path / "none"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = MaskMaker(local_files_only=True).make(rendered.image, cfg)
    doubts = [w for w in caught if issubclass(w.category, DoubtfulMaskWarning)]
    assert made is not None and made.usable and len(doubts) == 1
    assert "less than 1%" in str(doubts[0].message) and made.details["doubt"]
    subject_cfg = dataclasses.replace(cfg, points=[centre_click(rendered.subject_mask)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SamUnavailableWarning)
        warnings.simplefilter("error", DoubtfulMaskWarning)
        assert MaskMaker(local_files_only=True).make(rendered.image, subject_cfg) is not None


def test_a_click_on_the_background_is_answered_with_a_warning() -> None:
    maker = MaskMaker(local_files_only=True)
    for index, shape in enumerate(SHAPES):
        rendered = scene(shape, 40 + index)
        click = background_click(rendered.subject_mask, rendered.clutter_mask)
        cfg = MaskConfig(points=[click], sam_model="toy", max_coverage=1.0)
        with pytest.warns(DoubtfulMaskWarning, match="probably"):
            made = maker.make(rendered.image, cfg)
        assert made is not None and "probably" in made.details["doubt"]


def test_a_click_on_a_stone_gives_that_stone_or_a_warning() -> None:
    """A click on a background stone never silently selects the subject: the answer is the
    stone, or it comes with a warning (the mask leaves out the click, or is the background)."""
    maker = MaskMaker(local_files_only=True)
    for index, shape in enumerate(SHAPES):
        rendered = scene(shape, 60 + index)
        stone = largest_component(rendered.clutter_mask) > 0.5
        cfg = MaskConfig(points=[centre_click(stone)], sam_model="toy", max_coverage=1.0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            made = maker.make(rendered.image, cfg)
        assert made is not None
        doubts = [w for w in caught if issubclass(w.category, DoubtfulMaskWarning)]
        assert iou(made.mask > 0.5, stone) >= 0.5 or len(doubts) == 1, shape
        assert iou(made.mask > 0.5, rendered.subject_mask) < 0.5 or len(doubts) == 1, shape


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
    assert doubtful_selection(mask, clicks=[(30, 30)]) is None  # 16%, holds the click
    outside = str(doubtful_selection(mask, clicks=[(30, 30), (80.5, 10)]))
    assert "does not contain your click at (80.5, 10)" in outside
