"""Text selection: CLIPSeg plumbing on a tiny local model, and the map -> mask logic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from masks_fixtures import disc_mask, save_tiny_clipseg, save_tiny_sam

from pnpsam.masks import (
    NotATextSegmenterError,
    TextSegmenter,
    probability_to_mask,
    prompts_from_mask,
)


@pytest.fixture(scope="module")
def text_segmenter(tmp_path_factory: pytest.TempPathFactory) -> TextSegmenter:
    folder = save_tiny_clipseg(tmp_path_factory.mktemp("masks") / "tiny-clipseg")
    return TextSegmenter.from_pretrained(str(folder), local_files_only=True)


def test_probability_map_is_image_sized_and_depends_on_the_text(
    text_segmenter: TextSegmenter,
) -> None:
    from skimage import data

    image = data.chelsea()  # 300x451
    cat = text_segmenter.probability_map(image, "the cat")
    assert cat.shape == (300, 451) and cat.dtype == np.float32
    assert cat.min() >= 0.0 and cat.max() <= 1.0
    assert np.array_equal(cat, text_segmenter.probability_map(image, "the cat"))
    assert not np.allclose(cat, text_segmenter.probability_map(image, "the goldfish"))
    with pytest.raises(ValueError, match="blank"):
        text_segmenter.probability_map(image, " ")


def test_a_sam_folder_is_not_a_text_segmenter(tmp_path: Path) -> None:
    folder = save_tiny_sam(tmp_path / "sam")
    with pytest.raises(NotATextSegmenterError, match="'sam' model"):
        TextSegmenter.from_pretrained(str(folder), local_files_only=True)


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
