"""Text selection: CLIPSeg and Grounding DINO plumbing on tiny local models, and the logic that
turns their outputs into masks and SAM prompts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from masks_fixtures import disc_mask, save_tiny_clipseg, save_tiny_grounding_dino, save_tiny_sam

from pnpsam.masks import (
    NotATextSegmenterError,
    TextBoxDetector,
    TextSegmenter,
    load_text_selector,
    probability_to_mask,
    prompts_from_mask,
)


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    from skimage import data

    return data.chelsea()  # 300x451


@pytest.fixture(scope="module")
def text_segmenter(tmp_path_factory: pytest.TempPathFactory) -> TextSegmenter:
    folder = save_tiny_clipseg(tmp_path_factory.mktemp("masks") / "tiny-clipseg")
    selector = load_text_selector(str(folder), local_files_only=True)
    assert isinstance(selector, TextSegmenter)
    return selector


def test_probability_map_is_image_sized_and_depends_on_the_text(
    text_segmenter: TextSegmenter, chelsea: np.ndarray
) -> None:
    cat = text_segmenter.probability_map(chelsea, "the cat")
    assert cat.shape == (300, 451) and cat.dtype == np.float32
    assert cat.min() >= 0.0 and cat.max() <= 1.0
    assert np.array_equal(cat, text_segmenter.probability_map(chelsea, "the cat"))
    assert not np.allclose(cat, text_segmenter.probability_map(chelsea, "the goldfish"))
    with pytest.raises(ValueError, match="blank"):
        text_segmenter.probability_map(chelsea, " ")


def test_grounding_dino_boxes_are_clipped_sorted_and_text_dependent(
    tmp_path: Path, chelsea: np.ndarray
) -> None:
    folder = save_tiny_grounding_dino(tmp_path / "tiny-gdino")
    detector = load_text_selector(str(folder), local_files_only=True)
    assert isinstance(detector, TextBoxDetector)
    detections = detector.detect(chelsea, "The cat")  # normalised to "the cat."
    assert 0 < len(detections) <= 10  # at most one box per query
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for detection in detections:
        x0, y0, x1, y1 = detection.box
        assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300
    assert detector.detect(chelsea, "the cat.") == detections
    assert detector.detect(chelsea, "a cup") != detections


def test_a_sam_folder_is_not_a_text_model(tmp_path: Path) -> None:
    folder = save_tiny_sam(tmp_path / "sam")
    with pytest.raises(NotATextSegmenterError, match="'sam' model; expected"):
        load_text_selector(str(folder), local_files_only=True)


def _two_blobs() -> np.ndarray:
    """A strong blob (peak 0.9) and a weaker, smaller look-alike (peak 0.6) on a 0.1 floor."""
    probability = np.full((60, 100), 0.1, np.float32)
    probability[disc_mask(60, 100, 30, 30, 15) > 0] = 0.9
    probability[disc_mask(60, 100, 80, 30, 8) > 0] = 0.6
    return probability


def test_threshold_and_largest_component() -> None:
    probability = _two_blobs()
    both = probability_to_mask(probability, 0.4, keep_largest=False)
    assert np.array_equal(both, (probability > 0.4).astype(np.float32))
    largest = probability_to_mask(probability, 0.4)
    assert np.array_equal(largest, disc_mask(60, 100, 30, 30, 15))
    assert np.array_equal(probability_to_mask(probability, 0.7), largest)


def test_a_weak_peak_still_gives_a_mask() -> None:
    probability = _two_blobs() * 0.3  # peak 0.27, below the 0.4 threshold
    mask = probability_to_mask(probability, 0.4)
    assert np.array_equal(mask, disc_mask(60, 100, 30, 30, 15))
    with pytest.raises(ValueError, match="threshold"):
        probability_to_mask(probability, 1.5)


def test_prompts_from_a_coarse_mask() -> None:
    mask = disc_mask(60, 100, 30, 30, 15)
    box, point = prompts_from_mask(mask)
    assert box == (15.0, 15.0, 46.0, 46.0)  # XYXY, exclusive right/bottom
    assert point == (30.0, 30.0)  # the pixel farthest from the edge
    probability = _two_blobs()
    probability[20, 25] = 1.0
    _, peak = prompts_from_mask(mask, probability)
    assert peak == (25.0, 20.0)
    with pytest.raises(ValueError, match="empty mask"):
        prompts_from_mask(np.zeros((5, 5), np.float32))
