"""SAM plumbing end to end on a tiny SamModel saved locally and loaded through the real loader."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from masks_fixtures import save_tiny_clipseg, save_tiny_sam, save_tiny_sam2

from pnpsam.masks import NotASamModelError, PromptError, SamPointSegmenter, SamPrediction


@pytest.fixture(scope="module")
def tiny_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sam(tmp_path_factory.mktemp("masks") / "tiny-sam")


@pytest.fixture(scope="module")
def segmenter(tiny_sam_dir: Path) -> SamPointSegmenter:
    return SamPointSegmenter.from_pretrained(str(tiny_sam_dir), local_files_only=True)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A non-square real photo (scikit-image's coffee, 400x600) cropped to 240x400."""
    from skimage import data

    return np.ascontiguousarray(data.coffee()[80:320, 100:500])


def test_loads_sam_through_the_real_loader(segmenter: SamPointSegmenter) -> None:
    assert segmenter.family == "sam"
    assert segmenter.dtype == torch.float32 and segmenter.device.type == "cpu"
    assert not segmenter.is_image_set
    with pytest.raises(RuntimeError, match="set_image"):
        segmenter.predict([(1, 1)], [1])


def test_embedding_computed_once_for_many_clicks(
    segmenter: SamPointSegmenter, image: np.ndarray
) -> None:
    encoder_calls: list[int] = []
    handle = segmenter.model.vision_encoder.register_forward_hook(
        lambda *_: encoder_calls.append(1)
    )
    try:
        segmenter.set_image(image)
        assert segmenter.is_image_set and segmenter.image_size == (240, 400)
        clicks = [[(200, 120)], [(200, 120), (50, 30)], [(300, 200)]]
        predictions = [
            segmenter.predict(points, [1] + [0] * (len(points) - 1)) for points in clicks
        ]
        segmenter.predict(box=(100, 50, 300, 200))
    finally:
        handle.remove()
    assert len(encoder_calls) == 1
    for prediction in predictions:
        assert prediction.masks.shape == (3, 240, 400)  # full image size, not 256 or 64
        assert prediction.masks.dtype == bool
        assert prediction.iou_scores.shape == (3,)
    # The prompt reaches the decoder: other clicks give other quality estimates.
    assert not np.allclose(predictions[0].iou_scores, predictions[2].iou_scores)


def test_single_mask_output(segmenter: SamPointSegmenter, image: np.ndarray) -> None:
    segmenter.set_image(image)
    prediction = segmenter.predict([(200, 120)], [1], box=(100, 50, 300, 200), multimask=False)
    assert prediction.masks.shape == (1, 240, 400)


def test_clicks_are_mapped_like_the_processor_maps_them(
    segmenter: SamPointSegmenter, image: np.ndarray
) -> None:
    segmenter.set_image(image)
    points = [[10.0, 20.0], [399.0, 239.0]]
    reference = segmenter.processor(
        images=image, input_points=[[points]], input_boxes=[[[5, 6, 300, 200]]], return_tensors="pt"
    )
    assert np.allclose(segmenter.to_model_coords(np.array(points)), reference["input_points"][0, 0])
    box = segmenter.to_model_coords(np.array([[5, 6], [300, 200]])).reshape(4)
    assert np.allclose(box, reference["input_boxes"][0, 0])


def test_bad_prompts(segmenter: SamPointSegmenter, image: np.ndarray) -> None:
    segmenter.set_image(image)
    with pytest.raises(PromptError, match="x=400"):
        segmenter.predict([(400, 10)], [1])
    with pytest.raises(PromptError, match="y1=10 <= y0=50"):
        segmenter.predict(box=(0, 50, 100, 10))
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        segmenter.predict([(1, 1), (2, 2)], [1])
    with pytest.raises(ValueError, match="labels must be 1"):
        segmenter.predict([(1, 1)], [2])
    with pytest.raises(ValueError, match="at least one point or a box"):
        segmenter.predict()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        segmenter.set_image(image.astype(np.float32))


def test_prediction_selects_best_or_chosen_candidate() -> None:
    masks = np.zeros((3, 2, 2), bool)
    masks[1, 0, 0] = True
    prediction = SamPrediction(masks=masks, iou_scores=np.array([0.2, 0.9, 0.5], np.float32))
    assert prediction.best_index == 1
    assert np.array_equal(prediction.select(), masks[1])
    assert np.array_equal(prediction.select(2), masks[2])
    with pytest.raises(ValueError, match="mask index 3 out of range"):
        prediction.select(3)


def test_the_chosen_candidate_holds_the_clicks() -> None:
    """The best-rated candidate that contains every positive click; the best overall when
    none does (a mask without the user's click answers another object)."""
    masks = np.zeros((3, 8, 8), bool)
    masks[0, :4] = True  # top half: holds (2, 1)
    masks[1, 4:] = True  # bottom half: rated best, holds (2, 6)
    masks[2] = True  # everything
    prediction = SamPrediction(masks=masks, iou_scores=np.array([0.5, 0.9, 0.3], np.float32))
    assert prediction.best_index_for([(2, 1)]) == 0
    assert prediction.best_index_for([(2, 6)]) == 1
    assert prediction.best_index_for([(2, 1), (2, 6)]) == 2  # only the whole holds both
    assert prediction.best_index_for([(7.9, 7.9)]) == 1  # a click on the last pixel
    assert prediction.best_index_for([]) == 1
    masks[2] = False
    assert prediction.best_index_for([(2, 1), (2, 6)]) == 1  # none holds both: the best


def test_a_model_that_is_not_sam_is_refused(tmp_path: Path) -> None:
    folder = save_tiny_clipseg(tmp_path / "clipseg")
    with pytest.raises(
        NotASamModelError, match=r"'clipseg' model; expected model_type in \['sam', 'sam2'\]"
    ):
        SamPointSegmenter.from_pretrained(str(folder), local_files_only=True)


def test_missing_checkpoint_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        SamPointSegmenter.from_pretrained(str(tmp_path / "no-such-sam"), local_files_only=True)


def test_sam2_checkpoint_loads_or_says_it_needs_torchvision(tmp_path: Path) -> None:
    folder = str(save_tiny_sam2(tmp_path / "tiny-sam2"))
    if importlib.util.find_spec("torchvision") is None:
        with pytest.raises(ImportError, match="needs torchvision"):
            SamPointSegmenter.from_pretrained(folder, local_files_only=True)
        return
    segmenter = SamPointSegmenter.from_pretrained(folder, local_files_only=True)
    assert segmenter.family == "sam2"
    image = np.zeros((120, 200, 3), np.uint8)
    segmenter.set_image(image)
    prediction = segmenter.predict([(100, 60)], [1], box=(20, 10, 180, 110))
    assert prediction.masks.shape == (3, 120, 200)
