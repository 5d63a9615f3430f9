"""The masks front: config -> subject mask by file, SAM, text, or the GrabCut fallback."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from masks_fixtures import (
    disc_mask,
    iou,
    save_tiny_clipseg,
    save_tiny_grounding_dino,
    save_tiny_sam,
)
from PIL import Image

from pnpsam.masks import (
    EmptyMaskWarning,
    MaskConfig,
    MaskCoverageError,
    MaskMaker,
    PromptError,
    SamUnavailableWarning,
    SubjectMask,
    feather_mask,
    fill_mask_holes,
    finish_mask,
    grow_mask,
    make_subject_mask,
)

# Random-weight models give arbitrary masks; these bounds keep the coverage check out of
# plumbing tests (it is tested on constructed masks below).
ANY_COVERAGE = {"min_coverage": 0.0, "max_coverage": 1.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("masks")
    return {
        "sam": str(save_tiny_sam(root / "tiny-sam")),
        "clipseg": str(save_tiny_clipseg(root / "tiny-clipseg")),
        "gdino": str(save_tiny_grounding_dino(root / "tiny-gdino")),
        "missing": str(root / "no-weights-here"),
    }


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from skimage import data

    return data.coffee()


def test_no_source_means_plain_pnp(coffee: np.ndarray) -> None:
    assert make_subject_mask(coffee, MaskConfig()) is None


def test_mask_file_with_tools_and_provenance(tmp_path: Path, coffee: np.ndarray) -> None:
    Image.fromarray((disc_mask(100, 150, 75, 50, 25) * 255).astype(np.uint8)).save(
        tmp_path / "m.png"
    )
    cfg = MaskConfig(mask_file=str(tmp_path / "m.png"), grow_px=8, feather_px=4)
    result = make_subject_mask(coffee, cfg)
    assert result is not None and result.method == "file" and result.usable
    expected = feather_mask(grow_mask(disc_mask(400, 600, 300, 200, 100), 8), 4)
    assert result.mask.shape == (400, 600)
    assert np.abs(result.mask - expected).mean() < 0.01  # resize + tools as documented
    record = result.provenance()
    assert record["mask_file"].endswith("m.png") and record["grow_px"] == 8
    assert record["subject_fraction"] == pytest.approx((expected > 0.5).mean(), abs=0.01)
    json.dumps(record)  # goes into the resolved config as is


def test_clicks_with_sam_pick_best_or_chosen_and_reuse_embedding(
    models: dict[str, str], coffee: np.ndarray
) -> None:
    maker = MaskMaker(local_files_only=True)
    cfg = MaskConfig(points=[(290, 200)], sam_model=models["sam"], **ANY_COVERAGE)
    encoder_calls: list[int] = []
    handle = maker.sam(models["sam"]).model.vision_encoder.register_forward_hook(
        lambda *_: encoder_calls.append(1)
    )
    try:
        best = maker.make(coffee, cfg)
        cfg.neg_points = [(40, 350)]  # a second click on the same image
        chosen = maker.make(coffee, MaskConfig(**{**vars(cfg), "multimask_index": 2}))
        assert len(encoder_calls) == 1
        maker.make(coffee[:, ::-1].copy(), cfg)  # another image: encoded again
        assert len(encoder_calls) == 2
    finally:
        handle.remove()
    assert best is not None and chosen is not None
    assert best.method == "sam" and len(best.scores) == 3
    # the best-rated candidate that holds the click (this random SAM's masks are noise)
    segmenter = maker.sam(models["sam"])
    segmenter.set_image(coffee)
    direct = segmenter.predict([(290, 200)], [1])
    assert best.chosen_index == direct.best_index_for([(290, 200)])
    assert chosen.chosen_index == 2
    assert best.mask.shape == (400, 600) and set(np.unique(best.mask)) <= {0.0, 1.0}
    assert best.provenance()["sam_model"] == models["sam"]
    json.dumps(best.provenance())


def test_bad_clicks_fail_before_any_model_loads(coffee: np.ndarray) -> None:
    maker = MaskMaker(local_files_only=True)
    with pytest.raises(PromptError, match="x=700"):
        maker.make(coffee, MaskConfig(points=[(700, 10)], sam_model="not/loaded"))
    with pytest.raises(PromptError, match="y1=5 <= y0=50"):
        maker.make(coffee, MaskConfig(box=(0, 50, 100, 5), sam_model="not/loaded"))


def test_grabcut_fallback_when_sam_cannot_load(models: dict[str, str], coffee: np.ndarray) -> None:
    cfg = MaskConfig(points=[(290, 200)], sam_model=models["missing"])
    with pytest.warns(SamUnavailableWarning, match="GrabCut"):
        result = make_subject_mask(coffee, cfg, local_files_only=True)
    assert result is not None and result.method == "grabcut" and result.usable
    assert result.mask[200, 290] == 1.0 and result.mask[5, 5] == 0.0
    assert "sam_error" in result.details
    cfg.grabcut_fallback = False
    with pytest.raises(OSError):
        make_subject_mask(coffee, cfg, local_files_only=True)


def test_subject_text_without_a_text_model_is_a_clear_error(
    models: dict[str, str], coffee: np.ndarray
) -> None:
    cfg = MaskConfig(subject="the cup", text_model=models["missing"])
    with pytest.raises(OSError, match=r"text model .* subject='the cup'"):
        make_subject_mask(coffee, cfg, local_files_only=True)


def test_precedence_file_over_clicks_over_text(tmp_path: Path, coffee: np.ndarray) -> None:
    Image.fromarray((disc_mask(40, 60, 30, 20, 10) * 255).astype(np.uint8)).save(tmp_path / "m.png")
    cfg = MaskConfig(mask_file=str(tmp_path / "m.png"), points=[(1, 1)], subject="the cup")
    result = make_subject_mask(coffee, cfg)
    assert result is not None and result.method == "file"
    assert result.details["ignored"] == ["clicks", "subject"]


def test_subject_text_with_and_without_sam_refinement(
    models: dict[str, str], coffee: np.ndarray
) -> None:
    maker = MaskMaker(local_files_only=True)
    coarse_cfg = MaskConfig(
        subject="the cup",
        text_model=models["clipseg"],
        sam_model=models["missing"],
        **ANY_COVERAGE,
    )
    with pytest.warns(SamUnavailableWarning, match="CLIPSeg's coarse mask"):
        coarse = maker.make(coffee, coarse_cfg)
    assert coarse is not None and coarse.method == "text"
    assert coarse.details["refined_with"] is None and "sam_error" in coarse.details
    assert coarse.mask.shape == (400, 600) and coarse.mask.any()

    refined = maker.make(coffee, MaskConfig(**{**vars(coarse_cfg), "sam_model": models["sam"]}))
    assert refined is not None and refined.method == "text"
    assert refined.details["refined_with"] == models["sam"]
    x, y = refined.details["sam_point"]
    assert coarse.mask[int(y), int(x)] == 1.0  # SAM was prompted inside CLIPSeg's blob
    assert len(refined.scores) == 3
    json.dumps(refined.provenance())


def test_subject_text_with_grounding_dino_boxes(models: dict[str, str], coffee: np.ndarray) -> None:
    maker = MaskMaker(local_files_only=True)
    cfg = MaskConfig(subject="the cup", text_model=models["gdino"], sam_model=models["sam"])
    cfg.min_coverage, cfg.max_coverage = 0.0, 1.0
    refined = maker.make(coffee, cfg)
    assert refined is not None and refined.method == "text"
    assert refined.details["refined_with"] == models["sam"] and len(refined.scores) == 3
    x0, y0, x1, y1 = refined.details["sam_box"]
    assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400
    assert isinstance(refined.details["below_threshold"], bool)
    json.dumps(refined.provenance())

    cfg.sam_model = models["missing"]
    with pytest.warns(SamUnavailableWarning, match="GrabCut inside the detected box"):
        boxed = maker.make(coffee, cfg)
    assert boxed is not None and boxed.details["refined_with"] == "grabcut"
    assert boxed.details["sam_box"] == refined.details["sam_box"]  # same detection
    outside = np.ones((400, 600), bool)
    outside[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = False
    assert boxed.mask[outside].max() == 0.0  # GrabCut stays inside the box


def test_finish_mask_order_and_coverage() -> None:
    ring = disc_mask(80, 80, 40, 40, 20) - disc_mask(80, 80, 40, 40, 6)
    raw = SubjectMask(ring, "file")
    cfg = MaskConfig(mask_file="x", fill_holes=True, grow_px=3, invert=True, feather_px=2)
    done = finish_mask(raw, cfg)
    expected = feather_mask(1.0 - grow_mask(fill_mask_holes(ring), 3), 2)
    assert np.array_equal(done.mask, expected)
    assert iou(1.0 - done.mask, disc_mask(80, 80, 40, 40, 23)) > 0.95

    with pytest.warns(EmptyMaskWarning):
        empty = finish_mask(SubjectMask(np.zeros((8, 8), np.float32), "file"), MaskConfig())
    assert not empty.usable
    with pytest.raises(MaskCoverageError):
        finish_mask(SubjectMask(np.zeros((8, 8), np.float32), "file"), MaskConfig(invert=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert finish_mask(raw, MaskConfig()).usable
