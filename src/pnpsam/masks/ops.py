"""Pure operations on subject masks (no file I/O).

A mask is an ``HxW float32`` array in ``[0, 1]``, 1 = subject, 0 = background; values in between
are soft edges. Images are ``HxWx3 uint8`` RGB unless a function says otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import cv2
import numpy as np
from scipy import ndimage

from pnpsam.errors import InputError
from pnpsam.imageio import check_rgb_uint8
from pnpsam.masks.config import SUBJECT_FRACTION_RANGE, Box, Point


class MaskCoverageError(InputError):
    """The mask selects (almost) the whole image, so there is no background to edit."""


class EmptyMaskWarning(UserWarning):
    """The mask selects (almost) nothing; the edit falls back to plain PnP."""


class DoubtfulMaskWarning(UserWarning):
    """A selected mask is probably not the subject (tiny, huge, or the background); it is kept."""


def as_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Check a 2-D mask and return it as ``HxW float32`` in [0, 1] (bool -> 0/1).

    Raises ``ValueError`` for other ranks, non-finite values or values outside [0, 1].
    """
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputError(f"{name} must be HxW, got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"{name} is empty (shape {array.shape})")
    out = array.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise InputError(f"{name} has non-finite values")
    low, high = float(out.min()), float(out.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{name} values must be in [0, 1], got range [{low}, {high}]")
    return out


def _elliptical_kernel(radius_px: int) -> np.ndarray:
    size = 2 * radius_px + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def grow_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Dilate (``px > 0``) or erode (``px < 0``) by ``|px|`` pixels with an elliptical kernel.

    Works on soft masks too (grey-level morphology: max / min over the disc). ``|px|`` may be
    at most the mask's longer side: the kernel's memory and time grow with its square (100000
    px asked OpenCV for 40 GB), and a larger disc changes nothing more.
    """
    out = as_mask(mask)
    limit = max(out.shape)
    if abs(px) > limit:
        raise InputError(
            f"grow_px={px} is larger than the {out.shape[1]}x{out.shape[0]} mask; "
            f"use at most {limit} px either way"
        )
    if px == 0:
        return out
    kernel = _elliptical_kernel(abs(int(px)))
    # Border: replicate, so that a subject touching the frame does not erode away from it.
    op = cv2.dilate if px > 0 else cv2.erode
    return op(out, kernel, borderType=cv2.BORDER_REPLICATE)


def feather_mask(mask: np.ndarray, px: float) -> np.ndarray:
    """Soften the edge with a Gaussian blur of ``sigma = px / 2`` (0 = unchanged).

    The 2%..98% ramp across a straight edge is then about ``2 * px`` pixels wide, centred on it.
    """
    out = as_mask(mask)
    if not 0 <= px <= max(out.shape):  # NaN fails too; a wider blur only greys the whole mask
        raise InputError(
            f"feather_px={px} must be in [0, {max(out.shape)}] for the "
            f"{out.shape[1]}x{out.shape[0]} mask"
        )
    if px == 0:
        return out
    blurred = cv2.GaussianBlur(out, (0, 0), sigmaX=px / 2.0, borderType=cv2.BORDER_REPLICATE)
    return np.clip(blurred, 0.0, 1.0)


def fill_mask_holes(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Set background regions fully enclosed by subject (``mask > threshold``) to 1.

    Soft values elsewhere are kept; regions touching the image border are not holes.
    """
    out = as_mask(mask)
    solid = out > threshold
    holes = ndimage.binary_fill_holes(solid) & ~solid
    out[holes] = 1.0
    return out


def invert_mask(mask: np.ndarray) -> np.ndarray:
    """``1 - mask``: the background becomes the subject."""
    return 1.0 - as_mask(mask)


def largest_component(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Keep only the largest 8-connected blob of ``mask > threshold`` (soft values in it kept)."""
    out = as_mask(mask)
    solid = (out > threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if count <= 2:  # background + at most one blob: nothing to drop
        return out
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # Soft fringe next to the kept blob stays; other blobs and their fringes go.
    keep = cv2.dilate((labels == biggest).astype(np.uint8), _elliptical_kernel(1)) > 0
    return np.where(keep, out, 0.0).astype(np.float32)


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a (soft) mask to ``height x width``.

    Area averaging when shrinking (a token gets the subject fraction of its pixels), bilinear when
    enlarging; the result stays in [0, 1].
    """
    out = as_mask(mask)
    if height <= 0 or width <= 0:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    if out.shape == (height, width):
        return out
    shrinking = height * width < out.shape[0] * out.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(out, (width, height), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


def subject_fraction(mask: np.ndarray) -> float:
    """Fraction of pixels that are mostly subject (``mask > 0.5``)."""
    return float((as_mask(mask) > 0.5).mean())


def clicks_outside(mask: np.ndarray, clicks: Sequence[Point]) -> list[Point]:
    """The ``(x, y)`` pixel clicks that fall outside ``mask > 0.5`` (HxW, bool or in [0, 1]; a
    click on the far edge, ``x == width``, counts as the last pixel)."""
    selected = np.asarray(mask) > 0.5
    height, width = selected.shape
    return [
        (x, y) for x, y in clicks if not selected[min(int(y), height - 1), min(int(x), width - 1)]
    ]


def doubtful_selection(
    mask: np.ndarray,
    fraction_range: tuple[float, float] = SUBJECT_FRACTION_RANGE,
    clicks: Sequence[Point] = (),
) -> str | None:
    """Why a selected subject mask is probably not a subject, or None when it looks like one.

    Doubtful: a mask that leaves out one of the positive ``clicks`` (``(x, y)`` pixels: the
    selection is another object than the one clicked), a subject fraction (``mask > 0.5``)
    below or above ``fraction_range``, or a mask that touches all four image edges (what a
    click on the background selects).
    """
    selected = as_mask(mask) > 0.5
    outside = clicks_outside(selected, clicks)
    if outside:
        x, y = outside[0]
        return (
            f"the selection does not contain your click at ({x:g}, {y:g}): the mask is "
            "another object than the one clicked; click again nearer its middle, or add a box"
        )
    fraction = float(selected.mean())
    low, high = fraction_range
    if fraction < low:
        return (
            f"the selection covers only {fraction:.1%} of the image (less than {low:.0%}): "
            "probably a speck of background, not the subject; click inside the subject"
        )
    if fraction > high:
        return (
            f"the selection covers {fraction:.1%} of the image (more than {high:.0%}): "
            "probably the background, not the subject; click inside the subject"
        )
    edges = (selected[0].any(), selected[-1].any(), selected[:, 0].any(), selected[:, -1].any())
    if all(edges):
        return (
            f"the selection ({fraction:.1%} of the image) touches all four image edges: "
            "probably the background, not the subject; click inside the subject"
        )
    return None


def check_mask_coverage(
    mask: np.ndarray, min_fraction: float = 0.001, max_fraction: float = 0.995
) -> bool:
    """Check that the mask splits the image into subject and background.

    Returns ``True`` when it does. An (almost) empty mask (subject fraction ``< min_fraction``)
    issues an :class:`EmptyMaskWarning` and returns ``False``: the caller then runs plain PnP.
    An (almost) all-subject mask (``> max_fraction``) raises :class:`MaskCoverageError`: every
    subject-aware option would then be a no-op, which almost always means a wrong selection
    (e.g. an inverted mask file).
    """
    fraction = subject_fraction(mask)
    if fraction > max_fraction:
        raise MaskCoverageError(
            f"the mask marks {fraction:.1%} of the image as subject (more than "
            f"{max_fraction:.1%}), so there is no background to edit; check the selection "
            "or use invert"
        )
    if fraction < min_fraction:
        warnings.warn(
            f"the mask marks only {fraction:.2%} of the image as subject (less than "
            f"{min_fraction:.2%}); ignoring it and running plain PnP",
            EmptyMaskWarning,
            stacklevel=2,
        )
        return False
    return True


def mask_from_image_array(array: np.ndarray, name: str = "mask image") -> np.ndarray:
    """Interpret decoded mask-image pixels as a mask (same size as ``array``).

    Accepted: greyscale ``HxW`` (integers up to 255 read as 8-bit, up to 65535 as 16-bit, floats
    in [0, 1]; integer images whose maximum is 1 are read as 0/1 labels), and ``HxWx3`` or
    ``HxWx4``: an alpha channel that is not constant is the mask; otherwise the colour image must
    be grey (channels equal) or have at most two distinct colours (the brighter colour =
    subject). Any other colour image (a photo) raises ``ValueError``: guessing which colours
    mean "subject" would be silent nonsense.
    """
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        alpha = pixels[..., 3]
        if alpha.min() != alpha.max():
            return _grey_to_mask(alpha, name)
        pixels = pixels[..., :3]
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        return _grey_to_mask(pixels, name)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise InputError(f"{name} must be HxW, HxWx3 or HxWx4, got shape {pixels.shape}")
    if np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(
        pixels[..., 1], pixels[..., 2]
    ):
        return _grey_to_mask(pixels[..., 0], name)
    colours, inverse = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    if len(colours) > 2:
        raise InputError(
            f"{name} is a colour image with {len(colours)} distinct colours; a mask must be "
            "greyscale, have an alpha channel, or use at most two colours"
        )
    brightness = colours.astype(np.float64).sum(axis=1)
    subject_label = int(np.argmax(brightness))
    return (inverse.reshape(pixels.shape[:2]) == subject_label).astype(np.float32)


def _grey_to_mask(grey: np.ndarray, name: str) -> np.ndarray:
    if np.issubdtype(grey.dtype, np.bool_):
        return grey.astype(np.float32)
    if np.issubdtype(grey.dtype, np.integer):
        peak = int(grey.max())
        if int(grey.min()) < 0:
            raise InputError(f"{name} has negative values")
        if peak <= 1:  # a 0/1 label image saved as-is
            return grey.astype(np.float32)
        if peak > 65535:
            raise InputError(f"{name} has values up to {peak}; expected 8- or 16-bit greyscale")
        full_scale = 255.0 if peak <= 255 else 65535.0
        return grey.astype(np.float32) / full_scale
    return as_mask(grey, name)


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    color: tuple[int, int, int] = (30, 144, 255),
    alpha: float = 0.45,
    points: Sequence[Point] = (),
    neg_points: Sequence[Point] = (),
    box: Box | None = None,
) -> np.ndarray:
    """Tint the subject of an ``HxWx3 uint8`` RGB image, outline it, and mark the prompts.

    Positive clicks are green discs, negative ones red, the box is drawn in yellow.
    Returns a new ``HxWx3 uint8`` RGB image.
    """
    rgb = check_rgb_uint8(image)
    weights = as_mask(mask)
    if weights.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {weights.shape} differs from image size {rgb.shape[:2]}")
    tint = np.asarray(color, dtype=np.float32)
    blend = alpha * weights[..., None]
    out = (rgb.astype(np.float32) * (1.0 - blend) + tint * blend).round().astype(np.uint8)
    contours, _ = cv2.findContours(
        (weights > 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    thickness = max(1, round(max(rgb.shape[:2]) / 256))
    cv2.drawContours(out, contours, -1, color, thickness)
    radius = 2 * thickness + 2
    for group, dot_color in ((points, (0, 200, 0)), (neg_points, (220, 0, 0))):
        for x, y in group:
            centre = (round(x), round(y))
            cv2.circle(out, centre, radius, dot_color, -1)
            cv2.circle(out, centre, radius, (255, 255, 255), 1)
    if box is not None:
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(out, (x0, y0), (x1, y1), (255, 215, 0), thickness)
    return out
