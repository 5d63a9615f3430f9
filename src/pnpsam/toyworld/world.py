"""The toy world: a deterministic procedural renderer of "a {color} {shape} on {background}".

Every image is a flat-coloured subject (circle, square or triangle) over a textured background
that carries *structured clutter* (grass stalks, snow stones, sea plants, desert rocks, night
stars) -- the kind of background structure Plug-and-Play wrongly preserves. Rendering returns
the exact subject mask (and the clutter mask), so structure and text-following can be measured
exactly. Pure NumPy, no I/O; the same ``(spec, seed)`` always gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64
"""Side of every rendered image in pixels (the toy model's resolution)."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 35),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 40),
    "blue": (40, 70, 235),
    "purple": (140, 40, 200),
    "pink": (255, 110, 190),
}
"""Subject colour name -> flat RGB (saturated, chosen away from every background's base)."""

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

BACKGROUND_STYLES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "grass": ((70, 150, 55), (25, 80, 20)),
    "snow": ((228, 234, 244), (105, 105, 118)),
    "sea": ((25, 95, 165), (15, 120, 75)),
    "desert": ((215, 185, 120), (125, 85, 50)),
    "night": ((14, 18, 48), (250, 245, 200)),
}
"""Background name -> (base RGB, clutter RGB); textures modulate the base by up to about +-20%."""
BACKGROUNDS: tuple[str, ...] = tuple(BACKGROUND_STYLES)

CAPTION_TEMPLATE = "a {color} {shape} on {background}"
WORLD_WORDS: tuple[str, ...] = ("a", "on", *COLORS, *SHAPES, *BACKGROUNDS)
"""Every word a caption can contain (one tokenizer token each)."""
TOY_VOCABULARY = (
    f"64 px photos; prompts 'a COLOUR SHAPE on BACKGROUND' with colours {', '.join(COLORS)}; "
    f"shapes {', '.join(SHAPES)}; backgrounds {', '.join(BACKGROUNDS)}"
)
"""What the toy model understands, in words (``--help`` of ``--model``, the README)."""


@dataclass(frozen=True)
class SceneSpec:
    """What one toy image shows; with a render seed it fixes every pixel.

    ``center`` is the subject's (x, y) in [0, 1] image coordinates (x right, y down); ``size``
    is the subject's half-extent as a fraction of the image side; ``clutter`` is how many
    clutter items (stalks, stones, ...) the background carries (0 = none).
    """

    color: str
    shape: str
    background: str
    center: tuple[float, float] = (0.5, 0.5)
    size: float = 0.22
    clutter: int = 8

    def __post_init__(self) -> None:
        if self.color not in COLORS:
            raise ValueError(f"unknown color {self.color!r}; expected one of {list(COLORS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; expected one of {list(SHAPES)}")
        if self.background not in BACKGROUND_STYLES:
            raise ValueError(
                f"unknown background {self.background!r}; expected one of {list(BACKGROUNDS)}"
            )
        if not all(0.0 <= c <= 1.0 for c in self.center):
            raise ValueError(f"center must lie in [0, 1]^2, got {self.center!r}")
        if not 0.05 <= self.size <= 0.45:
            raise ValueError(f"size must lie in [0.05, 0.45], got {self.size!r}")
        if self.clutter < 0:
            raise ValueError(f"clutter must be >= 0, got {self.clutter!r}")

    @property
    def caption(self) -> str:
        """The fixed-grammar caption, e.g. ``"a red circle on grass"``."""
        return CAPTION_TEMPLATE.format(
            color=self.color, shape=self.shape, background=self.background
        )


@dataclass(frozen=True)
class RenderedScene:
    """A rendered scene: ``image`` HxWx3 uint8 RGB; ``subject_mask`` and ``clutter_mask`` HxW
    bool (True = subject / visible clutter pixel; the subject occludes clutter)."""

    image: np.ndarray
    subject_mask: np.ndarray
    clutter_mask: np.ndarray


def parse_caption(caption: str) -> SceneSpec:
    """Inverse of :attr:`SceneSpec.caption` (centre, size and clutter take their defaults)."""
    words = caption.strip().lower().split()
    if len(words) != 5 or words[0] != "a" or words[3] != "on":
        raise ValueError(f"caption {caption!r} does not match {CAPTION_TEMPLATE!r}")
    return SceneSpec(color=words[1], shape=words[2], background=words[4])


def shape_mask(shape: str, center: tuple[float, float], size: float, side: int) -> np.ndarray:
    """Exact side x side bool mask of a shape: pixel (row, col) is in when its centre is."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {list(SHAPES)}")
    coords = (np.arange(side, dtype=np.float64) + 0.5) / side
    x = coords[None, :] - center[0]
    y = coords[:, None] - center[1]
    if shape == "circle":
        return np.asarray(x**2 + y**2 <= size**2)
    if shape == "square":
        half = size * 0.85  # same visual area as the circle, roughly
        return np.asarray((np.abs(x) <= half) & (np.abs(y) <= half))
    # Upward triangle with apex at (0, -size) and base at y = +0.75 size.
    top, bottom = -size, 0.75 * size
    half_width = (y - top) / (bottom - top) * size * 1.1
    return np.asarray((y >= top) & (y <= bottom) & (np.abs(x) <= half_width))


def _draw_texture(background: str, rng: np.random.Generator, side: int) -> np.ndarray:
    """HxWx3 float background texture (0..255) without clutter: colour plus a per-class pattern."""
    base = np.array(BACKGROUND_STYLES[background][0], dtype=np.float64)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) / side
    phase = rng.uniform(0, 2 * np.pi)
    if background == "grass":
        pattern = 0.10 * np.sin(2 * np.pi * 9 * xx + phase)  # fine vertical blades
    elif background == "snow":
        pattern = 0.04 * np.sin(2 * np.pi * 2.5 * yy + 3 * xx + phase)  # soft drifts
    elif background == "sea":
        pattern = 0.18 * np.sin(2 * np.pi * 6 * yy + 2 * np.sin(6 * xx + phase))  # waves
    elif background == "desert":
        pattern = 0.09 * np.sin(2 * np.pi * 3 * (xx + 0.6 * yy) + phase)  # diagonal dunes
    else:  # night: darker at the top
        pattern = 0.35 * (yy - 0.5)
    grain = rng.normal(0.0, 0.025, size=(side, side))
    return base[None, None, :] * (1.0 + pattern + grain)[..., None]


def _draw_clutter(background: str, count: int, rng: np.random.Generator, side: int) -> np.ndarray:
    """HxW bool mask of ``count`` structured clutter items for ``background``."""
    mask = np.zeros((side, side), dtype=bool)
    yy, xx = np.mgrid[0:side, 0:side]
    for _ in range(count):
        cx, cy = rng.uniform(0, side, size=2)
        if background == "grass":  # slightly slanted stalk, 2 px wide
            height, slant = rng.uniform(10, 22), rng.uniform(-0.25, 0.25)
            t = (cy - yy) / height
            mask |= (t >= 0) & (t <= 1) & (np.abs(xx - (cx + slant * (cy - yy))) <= 1.0)
        elif background == "sea":  # wavy plant rising from its root
            height = rng.uniform(12, 24)
            t = (cy - yy) / height
            wave = cx + 2.0 * np.sin((cy - yy) / 3.0 + rng.uniform(0, 6))
            mask |= (t >= 0) & (t <= 1) & (np.abs(xx - wave) <= 1.0)
        elif background in ("snow", "desert"):  # flat stones / rocks
            rx, ry = rng.uniform(2.5, 5.0), rng.uniform(1.8, 3.2)
            mask |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        else:  # night: a small plus-shaped star
            arm = rng.choice([1.0, 2.0])
            dx, dy = np.abs(xx - cx), np.abs(yy - cy)
            mask |= ((dx <= arm) & (dy <= 0.6)) | ((dy <= arm) & (dx <= 0.6))
    return mask


def render_scene(spec: SceneSpec, seed: int, side: int = IMAGE_SIZE) -> RenderedScene:
    """Render ``spec`` deterministically; ``seed`` fixes texture phase, grain and clutter."""
    if side < 16:
        raise ValueError(f"side must be >= 16 pixels, got {side}")
    rng = np.random.default_rng(seed)
    canvas = _draw_texture(spec.background, rng, side)
    clutter = _draw_clutter(spec.background, spec.clutter, rng, side)
    canvas[clutter] = BACKGROUND_STYLES[spec.background][1]
    subject = shape_mask(spec.shape, spec.center, spec.size, side)
    canvas[subject] = COLORS[spec.color]
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return RenderedScene(image=image, subject_mask=subject, clutter_mask=clutter & ~subject)


def render(spec: SceneSpec, seed: int, side: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Render ``spec``: (HxWx3 uint8 RGB image, HxW bool subject mask, True = subject)."""
    scene = render_scene(spec, seed, side)
    return scene.image, scene.subject_mask


def sample_specs(n: int, seed: int, clutter_range: tuple[int, int] = (4, 12)) -> list[SceneSpec]:
    """``n`` random specs (uniform labels, centre in [0.3, 0.7]^2, size in [0.16, 0.28],
    clutter count uniform in ``clutter_range`` inclusive), deterministic from ``seed``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    colors, backgrounds = list(COLORS), list(BACKGROUNDS)
    specs = []
    for _ in range(n):
        specs.append(
            SceneSpec(
                color=colors[rng.integers(len(colors))],
                shape=SHAPES[rng.integers(len(SHAPES))],
                background=backgrounds[rng.integers(len(backgrounds))],
                center=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
                size=float(rng.uniform(0.16, 0.28)),
                clutter=int(rng.integers(clutter_range[0], clutter_range[1] + 1)),
            )
        )
    return specs
