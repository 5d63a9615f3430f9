"""GrabCut fallback on a real photo: scikit-image's coffee (400x600), a click on the cup."""

from __future__ import annotations

import numpy as np
import pytest
from masks_fixtures import iou

from pnpsam.masks import PromptError, grabcut_from_prompts

CUP_CLICK = (290.0, 200.0)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


@pytest.fixture(scope="module")
def cup_and_saucer() -> np.ndarray:
    """A rough hand-made region: two ellipses drawn over the cup and its saucer."""
    yy, xx = np.mgrid[0:400, 0:600]
    saucer = ((xx - 280) / 200) ** 2 + ((yy - 235) / 150) ** 2 <= 1
    cup = ((xx - 290) / 118) ** 2 + ((yy - 110) / 95) ** 2 <= 1
    return (saucer | cup).astype(np.float32)


def _check_cup_mask(mask: np.ndarray, reference: np.ndarray) -> None:
    assert mask.shape == (400, 600) and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    x, y = (int(v) for v in CUP_CLICK)
    assert mask[y, x] == 1.0  # the clicked object is in
    assert mask[[5, 5, 395, 395], [5, 595, 5, 595]].max() == 0.0  # the table's far corners out
    assert iou(mask, reference) > 0.8


def test_one_click_finds_cup_and_saucer(coffee: np.ndarray, cup_and_saucer: np.ndarray) -> None:
    mask = grabcut_from_prompts(coffee, [CUP_CLICK])
    _check_cup_mask(mask, cup_and_saucer)
    grabcut_from_prompts(coffee, [(100, 100)])  # moves OpenCV's global RNG on
    assert np.array_equal(grabcut_from_prompts(coffee, [CUP_CLICK]), mask)  # reproducible


def test_box_and_negative_clicks(coffee: np.ndarray, cup_and_saucer: np.ndarray) -> None:
    mask = grabcut_from_prompts(
        coffee, [CUP_CLICK], neg_points=[(40, 350), (560, 60)], box=(70, 10, 490, 390)
    )
    _check_cup_mask(mask, cup_and_saucer)
    assert mask[:, :70].max() == 0.0  # nothing outside the box


def test_a_negative_click_removes_what_it_marks(coffee: np.ndarray) -> None:
    with_spoon = grabcut_from_prompts(coffee, [CUP_CLICK])
    spoon = (320, 250)  # the spoon's bowl, next to the cup
    without = grabcut_from_prompts(coffee, [CUP_CLICK], neg_points=[spoon])
    assert with_spoon[spoon[1], spoon[0]] == 1.0
    assert without[spoon[1], spoon[0]] == 0.0
    assert without.sum() < with_spoon.sum()


def test_bad_input(coffee: np.ndarray) -> None:
    with pytest.raises(PromptError, match="x=600"):
        grabcut_from_prompts(coffee, [(600, 10)])
    with pytest.raises(ValueError, match="at least one positive point or a box"):
        grabcut_from_prompts(coffee, [])
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        grabcut_from_prompts(coffee[..., 0], [CUP_CLICK])
