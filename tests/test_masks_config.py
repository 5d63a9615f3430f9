"""Validation of the masks configs: bad input gets a ValueError that names the value."""

from __future__ import annotations

import pytest

from pnpsam.masks import MaskConfig, PromptError, WeakenConfig, validate_prompts


def test_valid_prompts_pass() -> None:
    validate_prompts([(0, 0), (199.5, 119.5)], [(10, 10)], (0, 0, 200, 120), height=120, width=200)


@pytest.mark.parametrize(
    ("points", "neg_points", "box", "message"),
    [
        ([(200, 10)], [], None, "x=200"),
        ([(10, -1)], [], None, "y=-1"),
        ([(10, 10)], [(5, 120)], None, "negative point"),
        ([], [], (50, 10, 40, 20), "x1=40 <= x0=50"),
        ([], [], (10, 30, 40, 20), "y1=20 <= y0=30"),
        ([], [], (10, 10, 10, 20), "x1=10 <= x0=10"),
        ([], [], (0, 0, 201, 120), "outside"),
    ],
)
def test_bad_prompts_name_the_value(
    points: list, neg_points: list, box: tuple | None, message: str
) -> None:
    with pytest.raises(PromptError, match=message):
        validate_prompts(points, neg_points, box, height=120, width=200)


def test_mask_config_checks_clicks_against_the_image() -> None:
    cfg = MaskConfig(points=[(150, 50)])
    cfg.validate()  # no image size: only the image-free checks
    cfg.validate(height=100, width=200)
    with pytest.raises(PromptError, match="x=150"):
        cfg.validate(height=100, width=100)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (MaskConfig(neg_points=[(1, 1)]), "need at least one positive point"),
        (MaskConfig(multimask_index=-1), "multimask_index"),
        (MaskConfig(text_threshold=1.0), "text_threshold"),
        (MaskConfig(feather_px=-2), "feather_px"),
        (MaskConfig(min_coverage=0.5, max_coverage=0.4), "min_coverage=0.5"),
        (MaskConfig(subject="  "), "blank"),
    ],
)
def test_mask_config_rejects_bad_fields(cfg: MaskConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg.validate()


def test_has_source() -> None:
    assert not MaskConfig().has_source
    assert MaskConfig(points=[(1, 1)]).has_source
    assert MaskConfig(box=(0, 0, 1, 1)).has_source
    assert MaskConfig(subject="the cat").has_source
    assert MaskConfig(mask_file="m.png").has_source


@pytest.mark.parametrize("factor", [0.0, -0.5, 1.5])
def test_dim_factor_outside_unit_interval_is_rejected(factor: float) -> None:
    with pytest.raises(ValueError, match=f"dim_factor must be in \\(0, 1\\], got {factor}"):
        WeakenConfig(background="dim", dim_factor=factor).validate()


def test_weaken_config_modes() -> None:
    WeakenConfig().validate()
    WeakenConfig(background="dim", dim_factor=1.0, restore="masked").validate()
    WeakenConfig(background="remove", restore="luminance").validate()
    with pytest.raises(ValueError, match="'fade'"):
        WeakenConfig(background="fade").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'brighten'"):
        WeakenConfig(restore="brighten").validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs background='dim'"):
        WeakenConfig(background="keep", restore="global").validate()
