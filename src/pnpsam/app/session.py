"""One browser session's state as plain data: the photo, the clicks and the current mask.

Nothing here touches Gradio or a model, so the rules (clicks in display pixels -> photo pixels,
which source makes the mask, a box from two clicks) are tested without a browser. Coordinates
follow :mod:`pnpsam.masks.config`: ``(x, y)`` pixels of the photo as uploaded, origin top-left.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from pnpsam.errors import InputError
from pnpsam.masks import MaskConfig, overlay_mask

ClickMode = Literal["subject", "not subject", "box"]
CLICK_MODES: tuple[ClickMode, ...] = ("subject", "not subject", "box")

DISPLAY_MIN_SIDE = (
    512  # small photos are shown enlarged (whole-number factor) so clicks are precise
)
DISPLAY_MAX_SIDE = 1024  # large photos are shown reduced: the browser gets a light image


def display_scale(width: int, height: int) -> float:
    """Display pixels per photo pixel: a whole factor >= 1 bringing the long side to at least
    ``DISPLAY_MIN_SIDE``, or < 1 bringing it down to ``DISPLAY_MAX_SIDE``."""
    side = max(width, height)
    if side > DISPLAY_MAX_SIDE:
        return DISPLAY_MAX_SIDE / side
    return float(max(1, DISPLAY_MIN_SIDE // side))


@dataclass
class Session:
    """Per-browser-session state (kept in a ``gr.State``, so sessions never share it).

    ``image``: the uploaded photo, ``HxWx3 uint8`` RGB (None before an upload); ``photo``: its
    file; ``scale``: display pixels per photo pixel. The subject comes from exactly one source at
    a time: clicks (``points``, ``neg_points``, ``box``), ``subject`` text or a ``mask_file``;
    setting one clears the others. ``mask``: the current subject mask at the photo size
    (``HxW float32`` in [0, 1]) with ``mask_details`` (how it was made).
    """

    photo: str | None = None
    image: np.ndarray | None = None
    scale: float = 1.0
    points: list[tuple[float, float]] = field(default_factory=list)
    neg_points: list[tuple[float, float]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    corner: tuple[float, float] | None = None  # first click of a box waiting for the second
    subject: str | None = None
    mask_file: str | None = None
    mask: np.ndarray | None = None
    mask_details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def with_photo(cls, photo: str, image: Image.Image) -> Session:
        """A fresh session on an uploaded photo (RGB)."""
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        return cls(photo=photo, image=pixels, scale=display_scale(width, height))

    @property
    def has_subject_source(self) -> bool:
        return bool(self.points or self.box is not None or self.subject or self.mask_file)

    def require_photo(self) -> np.ndarray:
        if self.image is None:
            raise InputError("upload a photo first")
        return self.image

    def cleared(self) -> Session:
        """The same photo with no subject."""
        return Session(photo=self.photo, image=self.image, scale=self.scale)

    def to_photo(self, x: float, y: float) -> tuple[float, float]:
        """A click at display pixel ``(x, y)`` -> photo pixel, kept inside the photo."""
        height, width = self.require_photo().shape[:2]
        if not (math.isfinite(x) and math.isfinite(y)):  # min/max would keep a NaN
            raise InputError(f"click at ({x}, {y}) is not a point on the photo")
        px = min(max(x / self.scale, 0.0), width - 1.0)
        py = min(max(y / self.scale, 0.0), height - 1.0)
        return round(px, 2), round(py, 2)

    def click(self, x: float, y: float, mode: ClickMode) -> Session:
        """Add a click at display pixel ``(x, y)``: a subject or not-subject point, or a box
        corner (the second corner completes the box). Text and mask-file sources are dropped."""
        if mode not in CLICK_MODES:
            raise InputError(f"click mode must be one of {CLICK_MODES}; got {mode!r}")
        point = self.to_photo(x, y)
        new = dataclasses.replace(
            self,
            points=list(self.points),
            neg_points=list(self.neg_points),
            subject=None,
            mask_file=None,
        )
        if mode == "subject":
            new.points.append(point)
        elif mode == "not subject":
            new.neg_points.append(point)
        elif self.corner is None:
            new.corner = point
        else:
            (x0, y0), (x1, y1) = self.corner, point
            new.corner = None
            if x0 != x1 and y0 != y1:
                new.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        return new

    def with_subject_text(self, text: str) -> Session:
        """Select the subject by text instead of clicks or a file."""
        if not text.strip():
            raise InputError("type the subject's name (e.g. 'the horse') before selecting by text")
        return dataclasses.replace(self.cleared(), subject=text.strip())

    def with_mask_file(self, path: str) -> Session:
        """Use an uploaded mask image (white = subject) instead of clicks or text."""
        return dataclasses.replace(self.cleared(), mask_file=path)

    def mask_config(self, base: MaskConfig) -> MaskConfig:
        """``base`` (models, mask tools) with this session's subject source filled in."""
        return dataclasses.replace(
            base,
            points=list(self.points),
            neg_points=list(self.neg_points),
            box=self.box,
            subject=self.subject,
            mask_file=self.mask_file,
        )

    def display(self) -> np.ndarray | None:
        """The photo at display size with the mask tinted and the clicks marked."""
        if self.image is None:
            return None
        height, width = self.image.shape[:2]
        size = (max(1, round(width * self.scale)), max(1, round(height * self.scale)))
        enlarge = self.scale >= 1
        resample = Image.Resampling.NEAREST if enlarge else Image.Resampling.LANCZOS
        shown = np.asarray(Image.fromarray(self.image).resize(size, resample))
        mask = np.zeros(shown.shape[:2], np.float32)
        if self.mask is not None:
            grey = Image.fromarray((self.mask * 255).round().astype(np.uint8))
            mask = np.asarray(grey.resize(size, resample), np.float32) / 255.0
        s = self.scale
        box = None
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            box = (x0 * s, y0 * s, x1 * s, y1 * s)
        marks = [*self.points, *([self.corner] if self.corner else [])]
        return overlay_mask(
            shown,
            mask,
            points=[(x * s, y * s) for x, y in marks],
            neg_points=[(x * s, y * s) for x, y in self.neg_points],
            box=box,
        )
