"""One (method, item) pair of a benchmark as a pure function: ``run_item`` -> rows + images.

Writes nothing: the runner (``pnpsam.bench.runner``) or an engine's driver writes the images
and appends the rows, so the same function runs in-process or on a Ray actor.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import EditConfig
from pnpsam.errors import InputError
from pnpsam.imageio import load_image
from pnpsam.manifest import EditItem
from pnpsam.masks.ops import resize_mask
from pnpsam.methods import MethodSpec, item_mask_config, run_method
from pnpsam.metrics import EditMetrics
from pnpsam.paths import safe_name

SOURCE_DIR = Path("images", "source")


def item_mask(item: EditItem, image: Image.Image) -> np.ndarray | None:
    """The item's given mask at the image's own size (``HxW float32``, 1 = subject), or None.

    Clicks/boxes are not resolved here: they travel in the config's ``mask`` section and the
    editor turns them into a mask (SAM, or its GrabCut fallback).
    """
    mask = item.load_mask()
    if mask is None:
        return None
    return resize_mask(mask.astype(np.float32), image.height, image.width)


def image_relpath(spec: MethodSpec | None, item: EditItem, index: int = 0) -> Path:
    """Where an image goes, relative to the output folder (``spec`` None: the item's source).

    Ids and labels become safe names (``pnpsam.paths.safe_name``): one file-name component each.
    """
    name = safe_name(item.id)
    if spec is None:
        return SOURCE_DIR / f"{name}.png"
    return Path("images", safe_name(spec.slug), f"{name}_{index}.png")


@dataclass
class ItemResult:
    """What one method made of one item: its rows and its images, none of them written yet.

    ``rows``: one per target prompt (``status`` ``ok``, or ``failed`` with the ``error``).
    ``images``: path relative to the output folder (a row's ``image``) -> picture; the item's
    source at the model input size comes first. Empty for a failed item.
    """

    rows: list[dict[str, Any]]
    images: dict[str, Image.Image] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return any(row["status"] == "failed" for row in self.rows)


def failed_rows(
    item: EditItem, spec: MethodSpec, settings: str, error: BaseException
) -> list[dict[str, Any]]:
    """One ``failed`` row per target prompt, carrying the error's last line."""
    detail = traceback.format_exception_only(type(error), error)[-1].strip()
    return [
        {
            "method": spec.label,
            "item": item.id,
            "settings": settings,
            "prompt_index": k,
            "prompt": prompt,
            "status": "failed",
            "error": detail,
        }
        for k, prompt in enumerate(item.target_prompts)
    ]


def run_item(
    editor: PnPEditor,
    item: EditItem,
    spec: MethodSpec,
    config: EditConfig,
    settings: str,
    metrics: EditMetrics | None = None,
) -> ItemResult:
    """Run one method on one item and score it; writes no file (a worker can call it anywhere).

    ``config``: the method's resolved config (``spec.edit_config(base)``); ``settings``: its
    :func:`settings_hash`, stored in every row. A failure of any kind (unreadable image,
    missing mask, ...) comes back as ``failed`` rows, never as an exception.
    """
    started = time.perf_counter()
    try:
        if item.image_path is None:
            raise InputError(
                "generated sources (no image file) are not supported by the runner; "
                "generate the image first and list it in a manifest"
            )
        config = EditConfig.from_dict(config.to_dict())
        config.pnp.seed = item.seed
        # the item's source prompt lets background_intent auto decide (unless the spec set one)
        config.pnp.source_prompt = config.pnp.source_prompt or item.source_prompt
        config.mask = item_mask_config(config.mask, item.points, item.point_labels, item.box)
        image = load_image(item.image_path)
        full_mask = item_mask(item, image)
        output = run_method(spec, editor, image, full_mask, item.target_prompts, config)
        seconds = time.perf_counter() - started
        mask = output.subject
        if not spec.info.uses_mask and (full_mask is not None or config.mask.has_source):
            # The method ran without the subject; the split metrics still need it, made as the
            # editor makes it, at the model input size.
            subject = editor.subject_mask(image, config, full_mask)
            mask = subject.mask if subject is not None and subject.usable else None
        scores = score_edits(metrics, output.source, output.images, item.target_prompts, mask)
    except Exception as error:  # a failed item is recorded and the run goes on
        return ItemResult(failed_rows(item, spec, settings, error))
    paths = [str(image_relpath(spec, item, k)) for k in range(len(output.images))]
    images = {str(image_relpath(None, item)): output.source}
    images.update(zip(paths, output.images, strict=True))
    per_prompt = seconds / len(item.target_prompts)
    rows = [
        {
            "method": spec.label,
            "item": item.id,
            "settings": settings,
            "prompt_index": k,
            "prompt": prompt,
            "status": "ok",
            "image": path,
            "has_mask": mask is not None,
            "seconds": per_prompt,
            "details": output.details,  # the method's extras: timings, mask method, strength
            **row,
        }
        for k, (prompt, path, row) in enumerate(
            zip(item.target_prompts, paths, scores, strict=True)
        )
    ]
    return ItemResult(rows, images)


def score_edits(
    metrics: EditMetrics | None,
    source: Image.Image,
    outputs: Sequence[Image.Image],
    prompts: Sequence[str],
    mask: np.ndarray | None,
) -> list[dict[str, float]]:
    """Metric values per output (``{}`` each without metric models); ``mask`` splits them."""
    if metrics is None:
        return [{} for _ in outputs]
    count = len(outputs)
    masks = [mask] * count
    return metrics.evaluate([source] * count, outputs, prompts, masks, masks)
