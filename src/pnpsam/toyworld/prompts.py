"""Prompts a user would give for a toy render's subject: clicks and boxes from its exact mask.

Masks are HxW bool (True = subject); clicks are ``(x, y)`` pixel coordinates (x = column);
boxes are XYXY pixels with the far edges exclusive (``max col + 1``), as
:func:`pnpsam.masks.config.validate_prompts` accepts them. Used by the toy SAM's training and
its benchmark (``benchmarks/toy_sam_quality.py``) so both click the same way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

Click = tuple[float, float]


def box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight XYXY pixel box of a non-empty mask: (min col, min row, max col + 1, max row + 1)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no box")
    return (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))


def centre_click(mask: np.ndarray) -> Click:
    """The subject pixel farthest from its edge (the first one in row-major order on ties)."""
    depth = ndimage.distance_transform_edt(mask)
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return (float(col), float(row))


def random_click(mask: np.ndarray, rng: np.random.Generator, min_depth: float = 2.0) -> Click:
    """A subject pixel drawn uniformly among those at least ``min_depth`` pixels inside (any
    subject pixel when none is that deep): a click anywhere on the subject, edges included."""
    depth = ndimage.distance_transform_edt(mask)
    rows, cols = np.nonzero(depth >= min_depth)
    if rows.size == 0:
        rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("the mask is empty: nothing to click")
    pick = int(rng.integers(rows.size))
    return (float(cols[pick]), float(rows[pick]))


def negative_click(subject: np.ndarray, clutter: np.ndarray) -> Click:
    """A "not this" click a user would add: the clutter pixel nearest the subject's centre, or
    without clutter the background pixel 3 px outside the subject nearest its centre."""
    cx, cy = centre_click(subject)
    ring = ndimage.binary_dilation(subject, iterations=3) & ~ndimage.binary_dilation(
        subject, iterations=2
    )
    pool = clutter & ~subject if (clutter & ~subject).any() else ring
    if not pool.any():
        pool = ~subject
    rows, cols = np.nonzero(pool)
    nearest = int(np.argmin((cols - cx) ** 2 + (rows - cy) ** 2))
    return (float(cols[nearest]), float(rows[nearest]))


def background_click(subject: np.ndarray, clutter: np.ndarray) -> Click:
    """A click on plain background (neither subject nor clutter), as far from both as can be:
    what a user hits when missing the subject."""
    free = ~(subject | clutter)
    depth = ndimage.distance_transform_edt(free)
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return (float(col), float(row))
