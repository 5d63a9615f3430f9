"""The toy world's renderer: deterministic, exact masks, captions that say what is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from pnpsam.toyworld.world import (
    BACKGROUNDS,
    COLORS,
    IMAGE_SIZE,
    SHAPES,
    WORLD_WORDS,
    SceneSpec,
    parse_caption,
    render,
    render_scene,
    sample_specs,
    shape_mask,
)


def test_render_is_deterministic_and_seed_changes_background_only() -> None:
    spec = SceneSpec("red", "circle", "grass", center=(0.4, 0.6), size=0.2, clutter=10)
    a, mask_a = render(spec, seed=3)
    b, mask_b = render(spec, seed=3)
    c, mask_c = render(spec, seed=4)
    assert a.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(mask_a, mask_b)
    # Another seed moves clutter and texture but never the subject.
    assert np.array_equal(mask_a, mask_c)
    assert not np.array_equal(a[~mask_a], c[~mask_c])
    assert np.array_equal(a[mask_a], c[mask_c])


@pytest.mark.parametrize("shape", SHAPES)
def test_subject_mask_is_exactly_the_subject_pixels(shape: str) -> None:
    for color in COLORS:
        spec = SceneSpec(color, shape, "desert", center=(0.55, 0.45), size=0.25, clutter=12)
        image, mask = render(spec, seed=11)
        is_color = np.all(image == np.array(COLORS[color], dtype=np.uint8), axis=-1)
        assert np.array_equal(is_color, mask), f"{color} {shape}: mask differs from pixels"


def test_shape_masks_have_their_geometry() -> None:
    side, size = 256, 0.3
    circle = shape_mask("circle", (0.5, 0.5), size, side)
    assert circle.sum() / side**2 == pytest.approx(np.pi * size**2, rel=0.02)
    square = shape_mask("square", (0.5, 0.5), size, side)
    assert square.sum() / side**2 == pytest.approx((2 * 0.85 * size) ** 2, rel=0.03)
    triangle = shape_mask("triangle", (0.5, 0.5), size, side)
    rows = np.flatnonzero(triangle.any(axis=1))
    top_width, bottom_width = triangle[rows[1]].sum(), triangle[rows[-1]].sum()
    assert bottom_width > 10 * max(top_width, 1)  # apex up, base down
    # The three shapes really differ at the same centre and size.
    assert (circle ^ square).sum() > 0.05 * circle.sum()
    assert (circle ^ triangle).sum() > 0.2 * circle.sum()


def test_clutter_is_structured_and_counted() -> None:
    for background in BACKGROUNDS:
        plain = render_scene(SceneSpec("red", "square", background, clutter=0), seed=1)
        busy = render_scene(SceneSpec("red", "square", background, clutter=12), seed=1)
        assert not plain.clutter_mask.any()
        assert busy.clutter_mask.sum() > 20, background
        assert not (busy.clutter_mask & busy.subject_mask).any()  # subject occludes clutter
        # Clutter pixels share one colour that differs clearly from the background texture.
        clutter_rgb = busy.image[busy.clutter_mask].astype(float)
        assert np.ptp(clutter_rgb, axis=0).max() == 0
        texture_rgb = plain.image[~plain.subject_mask].astype(float).mean(axis=0)
        assert np.abs(clutter_rgb[0] - texture_rgb).max() > 40, background


def test_backgrounds_have_distinct_colours() -> None:
    means = {
        bg: render(SceneSpec("red", "circle", bg, size=0.1, clutter=0), seed=0)[0]
        .reshape(-1, 3)
        .mean(axis=0)
        for bg in BACKGROUNDS
    }
    for i, a in enumerate(BACKGROUNDS):
        for b in BACKGROUNDS[i + 1 :]:
            assert np.abs(means[a] - means[b]).max() > 40, (a, b)


def test_caption_grammar_and_round_trip() -> None:
    spec = SceneSpec("purple", "triangle", "night")
    assert spec.caption == "a purple triangle on night"
    assert parse_caption(spec.caption) == spec
    assert set(spec.caption.split()) <= set(WORLD_WORDS)
    with pytest.raises(ValueError, match="a tiny dog"):
        parse_caption("a tiny dog")


@pytest.mark.parametrize(
    ("field", "value"),
    [("color", "teal"), ("shape", "hexagon"), ("background", "moon"), ("size", 0.9)],
)
def test_bad_specs_name_the_bad_value(field: str, value: object) -> None:
    kwargs: dict[str, object] = {"color": "red", "shape": "circle", "background": "sea"}
    kwargs[field] = value
    with pytest.raises(ValueError, match=str(value)):
        SceneSpec(**kwargs)  # type: ignore[arg-type]


def test_sample_specs_is_deterministic_and_covers_every_label() -> None:
    specs = sample_specs(600, seed=5)
    assert specs == sample_specs(600, seed=5)
    assert specs != sample_specs(600, seed=6)
    assert {s.color for s in specs} == set(COLORS)
    assert {s.shape for s in specs} == set(SHAPES)
    assert {s.background for s in specs} == set(BACKGROUNDS)
    assert all(0.3 <= c <= 0.7 for s in specs for c in s.center)
