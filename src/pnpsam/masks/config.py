"""Typed settings for getting a subject mask and for the report's background weakening.

Coordinates are image pixels: ``x`` is the column, ``y`` the row, origin at the top-left corner.
Boxes are XYXY ``(x0, y0, x1, y1)`` with ``x0 < x1`` and ``y0 < y1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from pnpsam.errors import InputError

Point = tuple[float, float]
"""One click ``(x, y)`` in image pixels."""
Box = tuple[float, float, float, float]
"""XYXY box ``(x0, y0, x1, y1)`` in image pixels."""

# "auto": decided per edit by the subject-aware policy (``pnpsam.config.SubjectPolicy``).
BackgroundMode = Literal["auto", "keep", "remove", "dim", "mean", "blur"]
RestoreMode = Literal["none", "global", "masked", "luminance"]
MaskMethod = Literal["sam", "sam2", "text", "file", "grabcut", "array"]

BACKGROUND_MODES: tuple[BackgroundMode, ...] = get_args(BackgroundMode)
RESTORE_MODES: tuple[RestoreMode, ...] = get_args(RestoreMode)

DEFAULT_SAM_MODEL = "facebook/sam-vit-base"
DEFAULT_TEXT_MODEL = "CIDAS/clipseg-rd64-refined"
# The toy-world SAM shipped in the package (trained by pnpsam.toyworld.sam_train on 64 px toy
# renders), selected with ``--sam-model toy``. A model folder's pnpsam_defaults.json names it
# (``"mask": {"sam_model": "toy"}``) to make it that model's default, as the shipped toy SD
# model's does (its one-click masks beat GrabCut on held-out renders: README).
TOY_SAM_DIR = Path(__file__).resolve().parents[1] / "assets" / "toy_sam"
# Short names for shipped SAMs, accepted wherever a SAM is named (--sam-model toy).
SAM_ALIASES = {"toy": TOY_SAM_DIR}
# A selection (clicks, box, text) whose subject covers less or more than these fractions of
# the image is probably not the subject: a click on a background stone, or on the background
# itself. The mask is kept and a DoubtfulMaskWarning says why (the CLI and the app show it).
SUBJECT_FRACTION_RANGE = (0.01, 0.90)


def resolve_sam_name(model: str) -> str:
    """A SAM alias (``toy``) -> its folder; any other id or path unchanged."""
    alias = SAM_ALIASES.get(model)
    return str(alias) if alias is not None else model


class PromptError(InputError):
    """A click or box that cannot be used on this image (outside it, or a degenerate box)."""


def validate_prompts(
    points: Sequence[Point],
    neg_points: Sequence[Point],
    box: Box | None,
    height: int,
    width: int,
) -> None:
    """Raise :class:`PromptError` naming the first click or box that does not fit an HxW image.

    Points must satisfy ``0 <= x < width`` and ``0 <= y < height``; a box must lie inside
    ``[0, width] x [0, height]`` with ``x0 < x1`` and ``y0 < y1``.
    """
    if height <= 0 or width <= 0:
        raise InputError(f"image size must be positive, got height={height}, width={width}")
    for kind, group in (("point", points), ("negative point", neg_points)):
        for point in group:
            if len(point) != 2:
                raise PromptError(f"{kind} must be (x, y), got {point!r}")
            x, y = point
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(
                    f"{kind} (x={x}, y={y}) lies outside the {width}x{height} image "
                    f"(need 0 <= x < {width}, 0 <= y < {height})"
                )
    if box is not None:
        if len(box) != 4:
            raise PromptError(f"box must be (x0, y0, x1, y1), got {box!r}")
        x0, y0, x1, y1 = box
        if x1 <= x0:
            raise PromptError(f"box {tuple(box)} has x1={x1} <= x0={x0}; boxes are XYXY")
        if y1 <= y0:
            raise PromptError(f"box {tuple(box)} has y1={y1} <= y0={y0}; boxes are XYXY")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise PromptError(f"box {tuple(box)} lies outside the {width}x{height} image")


@dataclass
class MaskConfig:
    """How to get the subject mask and how to post-process it.

    Exactly one source is used, in this order of precedence: ``mask_file``, then clicks
    (``points``/``neg_points``/``box``), then ``subject`` text. With none of them set there is no
    mask and the edit is plain PnP.
    """

    points: list[Point] = field(default_factory=list)  # positive clicks (x, y) on the subject
    neg_points: list[Point] = field(default_factory=list)  # clicks on things that are NOT subject
    box: Box | None = None  # XYXY pixel box around the subject; SAM's strongest single prompt
    subject: str | None = None  # text naming the subject ("the goldfish"): selection without clicks
    mask_file: str | None = None  # an existing mask image (any size; resized to the image)
    sam_model: str = DEFAULT_SAM_MODEL  # any SAM / SAM-2 hub id or local folder
    text_model: str = DEFAULT_TEXT_MODEL  # CLIPSeg or Grounding DINO id/folder for ``subject``
    multimask_index: int | None = None  # which of SAM's candidates; None = best predicted IoU
    text_threshold: float = 0.4  # CLIPSeg: pixel probability cut; Grounding DINO: box score
    text_largest_component: bool = True  # keep only the largest blob of a text-selected mask
    # When SAM cannot be loaded: warn and use GrabCut (clicks, boxes) or CLIPSeg's own map
    # (text); False = raise instead.
    grabcut_fallback: bool = True
    grow_px: int = 0  # > 0 dilates, < 0 erodes the mask by that many pixels (elliptical kernel)
    feather_px: float = 0.0  # soft edge: Gaussian blur with sigma = feather_px / 2
    fill_holes: bool = False  # fill enclosed holes (SAM often leaves gaps inside objects)
    invert: bool = False  # select the background instead (edit the subject, keep the rest)
    min_coverage: float = 0.001  # subject fraction below this = empty -> warn, plain PnP
    max_coverage: float = 0.995  # subject fraction above this = all subject -> error

    @property
    def has_source(self) -> bool:
        """Whether any way of making a mask was given."""
        return bool(self.mask_file or self.points or self.box is not None or self.subject)

    def validate(self, height: int | None = None, width: int | None = None) -> None:
        """Raise ``ValueError`` naming the bad field; given the image size, check the clicks too."""
        if self.neg_points and not (self.points or self.box is not None):
            raise PromptError(
                f"negative points {self.neg_points} need at least one positive point or a box"
            )
        if self.multimask_index is not None and self.multimask_index < 0:
            raise InputError(f"multimask_index must be >= 0 or None, got {self.multimask_index}")
        if not 0.0 < self.text_threshold < 1.0:
            raise InputError(f"text_threshold must be in (0, 1), got {self.text_threshold}")
        if self.feather_px < 0:
            raise InputError(f"feather_px must be >= 0, got {self.feather_px}")
        if not 0.0 <= self.min_coverage < self.max_coverage <= 1.0:
            raise InputError(
                "need 0 <= min_coverage < max_coverage <= 1, got "
                f"min_coverage={self.min_coverage}, max_coverage={self.max_coverage}"
            )
        if self.subject is not None and not self.subject.strip():
            raise InputError(f"subject text must not be blank, got {self.subject!r}")
        if height is not None and width is not None:
            validate_prompts(self.points, self.neg_points, self.box, height, width)


@dataclass
class WeakenConfig:
    """The report's scheme 3: weaken the background in pixels before inversion, then restore.

    ``auto`` (the default) is ``remove`` with a subject and ``keep`` without one (decided by
    ``config.SubjectPolicy``). ``dim`` multiplies background pixels by ``dim_factor``
    (the report used 0.5); ``remove`` fills them with 0 (alone, the report found it fails: the
    text has nothing left to act on); ``mean`` fills them with the background's mean colour and
    ``blur`` with a mask-normalised Gaussian blur of the background (sigma 1/8 of the short
    side): the old structure goes, its colour stays. After decoding, ``restore`` undoes the
    darkening: ``global`` is the report's fix (whole output x 1/factor), ``masked`` does it only
    where the background was dimmed, ``luminance`` matches the output
    background's luminance statistics to the source background's.
    """

    background: BackgroundMode = "auto"
    dim_factor: float = 0.5  # in (0, 1]; 1 leaves the background unchanged
    restore: RestoreMode = "none"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad field."""
        if self.background not in BACKGROUND_MODES:
            raise InputError(
                f"background must be one of {BACKGROUND_MODES}, got {self.background!r}"
            )
        if self.restore not in RESTORE_MODES:
            raise InputError(f"restore must be one of {RESTORE_MODES}, got {self.restore!r}")
        if not 0.0 < self.dim_factor <= 1.0:
            raise InputError(f"dim_factor must be in (0, 1], got {self.dim_factor}")
        if self.restore in ("global", "masked") and self.background != "dim":
            raise InputError(
                f"restore={self.restore!r} undoes dimming, so it needs background='dim', "
                f"got background={self.background!r}"
            )
