"""Front of the masks package: turn a :class:`MaskConfig` into the subject mask.

Sources, by precedence: a mask file, else clicks (points / negative points / box) into SAM, else
``subject`` text (CLIPSeg map or Grounding DINO box, refined by SAM). Loads the models a config
asks for, keeps them and the last image embedding between calls (a UI can call
:meth:`MaskMaker.make` on every click and pay for the image encoder once), falls back with a
:class:`SamUnavailableWarning` when SAM cannot be loaded (GrabCut for clicks and boxes, CLIPSeg's
own map for text), then applies the mask tools (fill holes -> grow/shrink -> invert -> feather)
and the coverage check.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from pnpsam.errors import InputError
from pnpsam.imageio import check_rgb_uint8, image_digest
from pnpsam.masks.config import Box, MaskConfig, MaskMethod, Point, resolve_sam_name
from pnpsam.masks.files import load_mask_file
from pnpsam.masks.grabcut import grabcut_from_prompts
from pnpsam.masks.ops import (
    DoubtfulMaskWarning,
    check_mask_coverage,
    doubtful_selection,
    feather_mask,
    fill_mask_holes,
    grow_mask,
    invert_mask,
    subject_fraction,
)
from pnpsam.masks.sam import SamPointSegmenter
from pnpsam.masks.text import (
    TextBoxDetector,
    TextSelector,
    load_text_selector,
    probability_to_mask,
    prompts_from_mask,
)
from pnpsam.models.hub import ModelUnavailableError, check_available, unavailable

SAM_ADVICE = (
    "give a local SAM folder (--sam-model), a mask file (--mask), or allow the GrabCut fallback"
)
# the advice of the fallback warning: the fallback is already in use
SAM_FALLBACK_ADVICE = "for a sharper mask give a local SAM folder (--sam-model) or a mask (--mask)"
TEXT_ADVICE = (
    "give a local CLIPSeg / Grounding DINO folder (--text-model), clicks (--point) or a mask "
    "file (--mask)"
)


def check_mask_models(cfg: MaskConfig) -> None:
    """Raise :class:`ModelUnavailableError` at once (before any other model is loaded) when a
    model the mask needs without a fallback is on an offline hub and not cached."""
    if cfg.mask_file:
        return
    clicks = bool(cfg.points) or cfg.box is not None
    if cfg.subject and not clicks:
        check_available(cfg.text_model, "the text model", TEXT_ADVICE)
    if (clicks or cfg.subject) and not cfg.grabcut_fallback:
        check_available(resolve_sam_name(cfg.sam_model), "SAM", SAM_ADVICE)


class SamUnavailableWarning(UserWarning):
    """SAM weights could not be loaded; the mask comes from a rougher fallback."""


@dataclass
class SubjectMask:
    """The subject mask and how it was made.

    ``mask``: ``HxW float32`` in [0, 1], 1 = subject, after all mask tools. ``usable`` is False
    when the mask is (almost) empty: the caller then runs plain PnP (a warning was issued).
    ``details`` is JSON-ready provenance for the resolved config (model id, candidate scores,
    chosen index, threshold, timings...).
    """

    mask: np.ndarray
    method: MaskMethod
    usable: bool = True
    chosen_index: int | None = None
    scores: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """What goes into the resolved config JSON under the mask key."""
        return {
            "method": self.method,
            "usable": self.usable,
            "chosen_index": self.chosen_index,
            "scores": [round(s, 4) for s in self.scores],
            "subject_fraction": round(subject_fraction(self.mask), 4),
            **self.details,
        }


class MaskMaker:
    """Makes subject masks per config; caches loaded models and the last SAM image embedding."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **load_kwargs: Any,
    ) -> None:
        self.device = device
        self.dtype = dtype
        self.load_kwargs = load_kwargs  # passed to every from_pretrained (e.g. local_files_only)
        self._sam: dict[str, SamPointSegmenter] = {}
        self._sam_image_key: dict[str, str] = {}
        self._text: dict[str, TextSelector] = {}

    def sam(self, model_id: str) -> SamPointSegmenter:
        """The SAM segmenter for ``model_id``, loaded on first use."""
        if model_id not in self._sam:
            path = resolve_sam_name(model_id)
            self._sam[model_id] = SamPointSegmenter.from_pretrained(
                path, device=self.device, dtype=self.dtype, **self._hub(path, "SAM")
            )
        return self._sam[model_id]

    def _hub(self, model_id: str, what: str) -> dict[str, Any]:
        """``load_kwargs``, offline-safe: an uncached hub id on an offline hub fails at once
        (:class:`ModelUnavailableError`, an ``OSError``), a cached one loads without retries."""
        advice = SAM_ADVICE if what == "SAM" else TEXT_ADVICE
        if check_available(model_id, what, advice):
            return {**self.load_kwargs, "local_files_only": True}
        return self.load_kwargs

    def text_selector(self, model_id: str) -> TextSelector:
        """The text selector (CLIPSeg or Grounding DINO) for ``model_id``, loaded on first use."""
        if model_id not in self._text:
            kwargs = self._hub(model_id, "the text model")
            try:
                self._text[model_id] = load_text_selector(
                    model_id, device=self.device, dtype=self.dtype, **kwargs
                )
            except ModelUnavailableError:
                raise
            except OSError as error:
                raise unavailable(model_id, "the text model", TEXT_ADVICE, error) from error
        return self._text[model_id]

    def _sam_on_image(self, model_id: str, image: np.ndarray) -> SamPointSegmenter:
        segmenter = self.sam(model_id)
        key = image_digest(image)
        if not segmenter.is_image_set or self._sam_image_key.get(model_id) != key:
            segmenter.set_image(image)
            self._sam_image_key[model_id] = key
        return segmenter

    def make(self, image: np.ndarray, cfg: MaskConfig) -> SubjectMask | None:
        """The subject mask of ``image`` (``HxWx3 uint8`` RGB) as ``cfg`` asks, or None when
        ``cfg`` names no source (plain PnP).

        Raises ``ValueError`` subclasses for bad clicks, files and configs and
        :class:`~pnpsam.masks.ops.MaskCoverageError` for an all-subject mask; an empty mask
        warns and comes back with ``usable=False``.
        """
        pixels = check_rgb_uint8(image)
        height, width = pixels.shape[:2]
        cfg.validate(height, width)
        if not cfg.has_source:
            return None
        started = time.perf_counter()
        if cfg.mask_file:
            raw = SubjectMask(
                load_mask_file(cfg.mask_file, height, width),
                "file",
                details={"mask_file": str(cfg.mask_file)},
            )
        elif cfg.points or cfg.box is not None:
            raw = self._from_clicks(pixels, cfg)
        else:
            raw = self._from_text(pixels, cfg)
        raw.details["seconds"] = round(time.perf_counter() - started, 4)
        # The user's own file is taken as meant; an empty mask gets EmptyMaskWarning instead.
        if not cfg.mask_file and subject_fraction(raw.mask) >= cfg.min_coverage:
            doubt = doubtful_selection(raw.mask, clicks=cfg.points)
            if doubt:
                raw.details["doubt"] = doubt
                warnings.warn(doubt, DoubtfulMaskWarning, stacklevel=2)
        ignored = _ignored_sources(cfg)
        if ignored:
            raw.details["ignored"] = ignored
        return finish_mask(raw, cfg)

    def _sam_or_fallback(
        self, image: np.ndarray, cfg: MaskConfig, fallback: str, details: dict[str, Any]
    ) -> SamPointSegmenter | None:
        """SAM with ``image`` set, or None when SAM cannot be loaded and ``cfg.grabcut_fallback``
        allows falling back: then a warning names ``fallback`` and ``details`` gets the error."""
        try:
            return self._sam_on_image(cfg.sam_model, image)
        except OSError as error:  # no weights: offline, unknown id, missing folder
            if not cfg.grabcut_fallback:
                if isinstance(error, ModelUnavailableError):
                    raise
                raise unavailable(cfg.sam_model, "SAM", SAM_ADVICE, error) from error
            details["sam_error"] = str(error)
            reason = str(error).removesuffix(f"; {SAM_ADVICE}")  # it advises the fallback
            warnings.warn(
                f"could not load SAM {cfg.sam_model!r} ({reason}); using {fallback} instead, "
                f"which is much rougher than SAM; {SAM_FALLBACK_ADVICE}",
                SamUnavailableWarning,
                stacklevel=4,
            )
            return None

    @staticmethod
    def _sam_mask(
        segmenter: SamPointSegmenter,
        cfg: MaskConfig,
        points: list[Point],
        neg_points: list[Point],
        box: Box | None,
        method: MaskMethod,
        details: dict[str, Any],
    ) -> SubjectMask:
        labels = [1] * len(points) + [0] * len(neg_points)
        prediction = segmenter.predict([*points, *neg_points], labels, box, multimask=True)
        chosen = cfg.multimask_index
        if chosen is None:
            chosen = prediction.best_index_for(points)
        return SubjectMask(
            prediction.select(chosen).astype(np.float32),
            method,
            chosen_index=chosen,
            scores=[float(s) for s in prediction.iou_scores],
            details={**details, "sam_model": cfg.sam_model},
        )

    def _from_clicks(self, image: np.ndarray, cfg: MaskConfig) -> SubjectMask:
        details: dict[str, Any] = {}
        if cfg.box is None:
            fallback = "OpenCV GrabCut seeded from the clicks"
        else:
            fallback = "OpenCV GrabCut inside the box" + (" and its clicks" if cfg.points else "")
        segmenter = self._sam_or_fallback(image, cfg, fallback, details)
        if segmenter is None:
            mask = grabcut_from_prompts(image, cfg.points, cfg.neg_points, cfg.box)
            return SubjectMask(mask, "grabcut", details=details)
        method: MaskMethod = "sam2" if segmenter.family == "sam2" else "sam"
        return self._sam_mask(segmenter, cfg, cfg.points, cfg.neg_points, cfg.box, method, details)

    def _from_text(self, image: np.ndarray, cfg: MaskConfig) -> SubjectMask:
        subject = cfg.subject
        if not subject:
            raise InputError(f"selecting by text needs a subject text; got subject={subject!r}")
        try:
            selector = self.text_selector(cfg.text_model)
        except OSError as error:  # no fallback: without a text model "the goldfish" means nothing
            raise ModelUnavailableError(
                f"{error} (needed to select subject={subject!r})"
            ) from error
        details: dict[str, Any] = {
            "subject": subject,
            "text_model": cfg.text_model,
            "text_threshold": cfg.text_threshold,
            "refined_with": None,
        }
        if isinstance(selector, TextBoxDetector):
            return self._from_detection(image, subject, cfg, selector, details)
        # CLIPSeg: threshold its map, then refine the blob with SAM (box + peak as prompts).
        probability = selector.probability_map(image, subject)
        coarse = probability_to_mask(probability, cfg.text_threshold, cfg.text_largest_component)
        details["peak_probability"] = round(float(probability.max()), 4)
        if not coarse.any():
            return SubjectMask(coarse, "text", details=details)
        segmenter = self._sam_or_fallback(image, cfg, "CLIPSeg's coarse mask", details)
        if segmenter is None:
            return SubjectMask(coarse, "text", details=details)
        box, peak = prompts_from_mask(coarse, probability)
        details.update(refined_with=cfg.sam_model, sam_box=list(box), sam_point=list(peak))
        return self._sam_mask(segmenter, cfg, [peak], [], box, "text", details)

    def _from_detection(
        self,
        image: np.ndarray,
        subject: str,
        cfg: MaskConfig,
        detector: TextBoxDetector,
        details: dict[str, Any],
    ) -> SubjectMask:
        """Grounding DINO: the best box (even below the threshold: the user says the subject is
        there; ``below_threshold`` records it) into SAM as a box prompt, else into GrabCut."""
        detections = detector.detect(image, subject)
        if not detections:
            return SubjectMask(np.zeros(image.shape[:2], np.float32), "text", details=details)
        best = detections[0]
        details.update(
            sam_box=list(best.box),
            box_score=round(best.score, 4),
            below_threshold=best.score < cfg.text_threshold,
        )
        fallback = "OpenCV GrabCut inside the detected box"
        segmenter = self._sam_or_fallback(image, cfg, fallback, details)
        if segmenter is None:
            mask = grabcut_from_prompts(image, [], box=best.box)
            return SubjectMask(mask, "text", details={**details, "refined_with": "grabcut"})
        details["refined_with"] = cfg.sam_model
        return self._sam_mask(segmenter, cfg, [], [], best.box, "text", details)


def _ignored_sources(cfg: MaskConfig) -> list[str]:
    """Sources given but not used, by the precedence file > clicks > subject text."""
    clicks = bool(cfg.points or cfg.box is not None)
    ignored = []
    if cfg.mask_file and clicks:
        ignored.append("clicks")
    if cfg.subject and (cfg.mask_file or clicks):
        ignored.append("subject")
    return ignored


def finish_mask(raw: SubjectMask, cfg: MaskConfig) -> SubjectMask:
    """Apply the mask tools in a fixed order and the coverage check.

    Order: fill holes and grow/shrink act on the selected object, then invert (if asked), then
    feather, so the soft edge is symmetric whichever side is the subject.
    """
    mask = raw.mask
    if cfg.fill_holes:
        mask = fill_mask_holes(mask)
    mask = grow_mask(mask, cfg.grow_px)
    if cfg.invert:
        mask = invert_mask(mask)
    mask = feather_mask(mask, cfg.feather_px)
    usable = check_mask_coverage(mask, cfg.min_coverage, cfg.max_coverage)
    tools = {
        "fill_holes": cfg.fill_holes,
        "grow_px": cfg.grow_px,
        "invert": cfg.invert,
        "feather_px": cfg.feather_px,
    }
    return SubjectMask(
        mask,
        raw.method,
        usable=usable,
        chosen_index=raw.chosen_index,
        scores=raw.scores,
        details={**raw.details, **tools},
    )


def make_subject_mask(
    image: np.ndarray,
    cfg: MaskConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **load_kwargs: Any,
) -> SubjectMask | None:
    """One-shot :meth:`MaskMaker.make` (loads models each call; keep a MaskMaker to reuse them)."""
    return MaskMaker(device, dtype, **load_kwargs).make(image, cfg)
