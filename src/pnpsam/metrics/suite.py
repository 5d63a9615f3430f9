"""All the edit metrics for a batch of (source, output, prompt, masks), as flat rows of floats.

Row keys (each present when its model is enabled and its mask given):

* ``structure`` — whole-image structure distance (lower = structure kept);
  ``structure_subject`` / ``structure_background`` — the same inside / outside the subject mask.
* ``clip_whole`` — CLIP score of the output against the target prompt;
  ``clip_subject`` / ``clip_background`` — output x subject mask / x (1 - subject mask);
  ``clip_edited`` — output x edit mask (PIE-Bench's "edited" CLIP).
* ``psnr_bg``, ``ssim_bg``, ``mse_bg`` and ``<lpips name>_bg`` — background preservation
  outside the edit mask (PIE-Bench), where ``<lpips name>`` is ``lpips`` or
  ``lpips_unweighted`` (see :mod:`pnpsam.metrics.lpips`).

Masks are ``HxW`` with 1 = subject / edited region, the size of the images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from pnpsam.imageio import PixelInput, to_float_array
from pnpsam.metrics.background import mse, psnr, ssim
from pnpsam.metrics.clip_score import ClipScoreConfig, ClipScorer
from pnpsam.metrics.image_inputs import MaskInput, to_mask_array
from pnpsam.metrics.lpips import LpipsConfig, PerceptualDistance
from pnpsam.metrics.structure import DinoStructureDistance, StructureDistanceConfig


@dataclass(frozen=True)
class EditMetricsConfig:
    """Which metric models to load (each can be switched off) and their settings."""

    structure: StructureDistanceConfig = field(default_factory=StructureDistanceConfig)
    clip: ClipScoreConfig = field(default_factory=ClipScoreConfig)
    lpips: LpipsConfig = field(default_factory=LpipsConfig)
    use_structure: bool = True  # DINO ViT-B/8, ~86 M parameters
    use_clip: bool = True  # CLIP ViT-L/14, ~430 M parameters
    use_lpips: bool = True  # PSNR/SSIM/MSE need no model and are always computed


class EditMetrics:
    """Holds the loaded metric models; :meth:`evaluate` scores batches of edits."""

    def __init__(
        self,
        structure: DinoStructureDistance | None = None,
        clip: ClipScorer | None = None,
        lpips: PerceptualDistance | None = None,
    ) -> None:
        self.structure = structure
        self.clip = clip
        self.lpips = lpips

    @classmethod
    def from_pretrained(
        cls,
        config: EditMetricsConfig | None = None,
        device: str | torch.device = "cpu",
        local_files_only: bool = False,
    ) -> EditMetrics:
        """Load the enabled models once (hub ids or local folders from ``config``)."""
        config = config or EditMetricsConfig()
        return cls(
            structure=DinoStructureDistance.from_pretrained(
                config.structure, device=device, local_files_only=local_files_only
            )
            if config.use_structure
            else None,
            clip=ClipScorer.from_pretrained(
                config.clip, device=device, local_files_only=local_files_only
            )
            if config.use_clip
            else None,
            lpips=PerceptualDistance.from_pretrained(
                config.lpips, device=device, local_files_only=local_files_only
            )
            if config.use_lpips
            else None,
        )

    def evaluate(
        self,
        sources: Sequence[PixelInput],
        outputs: Sequence[PixelInput],
        target_prompts: Sequence[str],
        subject_masks: Sequence[MaskInput | None] | None = None,
        edit_masks: Sequence[MaskInput | None] | None = None,
    ) -> list[dict[str, float]]:
        """One row of metrics per edit (see the module docstring for the keys)."""
        count = len(sources)
        if not count == len(outputs) == len(target_prompts):
            raise ValueError(
                f"got {count} sources, {len(outputs)} outputs, {len(target_prompts)} prompts"
            )
        subjects = _normalised_masks(subject_masks, sources, "subject_masks")
        edits = _normalised_masks(edit_masks, sources, "edit_masks")
        rows: list[dict[str, float]] = [{} for _ in range(count)]
        with_subject = [i for i in range(count) if subjects[i] is not None]
        with_edit = [i for i in range(count) if edits[i] is not None]

        def put(key: str, indices: list[int], values: torch.Tensor | list[float]) -> None:
            for index, value in zip(indices, values, strict=True):
                rows[index][key] = float(value)

        def pick(items: Sequence, indices: list[int]) -> list:
            return [items[i] for i in indices]

        everyone = list(range(count))
        if self.structure is not None:
            put("structure", everyone, self.structure(sources, outputs))
            if with_subject:
                src, out = pick(sources, with_subject), pick(outputs, with_subject)
                masks = pick(subjects, with_subject)
                put("structure_subject", with_subject, self.structure(src, out, masks))
                put("structure_background", with_subject, self.structure(src, out, _inv(masks)))
        if self.clip is not None:
            put("clip_whole", everyone, self.clip(outputs, target_prompts))
            if with_subject:
                out, texts = pick(outputs, with_subject), pick(target_prompts, with_subject)
                masks = pick(subjects, with_subject)
                put("clip_subject", with_subject, self.clip(out, texts, masks))
                put("clip_background", with_subject, self.clip(out, texts, _inv(masks)))
            if with_edit:
                out, texts = pick(outputs, with_edit), pick(target_prompts, with_edit)
                put("clip_edited", with_edit, self.clip(out, texts, pick(edits, with_edit)))
        if with_edit:
            src, out = pick(sources, with_edit), pick(outputs, with_edit)
            masks = pick(edits, with_edit)
            for key, fn in (("psnr_bg", psnr), ("ssim_bg", ssim), ("mse_bg", mse)):
                put(key, with_edit, [fn(s, o, m) for s, o, m in zip(src, out, masks, strict=True)])
            if self.lpips is not None:
                put(f"{self.lpips.name}_bg", with_edit, self.lpips(src, out, masks))
        return rows


def _normalised_masks(
    masks: Sequence[MaskInput | None] | None, sources: Sequence[PixelInput], name: str
) -> list[np.ndarray | None]:
    if masks is None:
        return [None] * len(sources)
    if len(masks) != len(sources):
        raise ValueError(f"got {len(masks)} {name} for {len(sources)} images")
    return [
        None if mask is None else to_mask_array(mask, to_float_array(source).shape[:2])
        for mask, source in zip(masks, sources, strict=True)
    ]


def _inv(masks: list[np.ndarray]) -> list[np.ndarray]:
    return [1.0 - mask for mask in masks]
