"""SDXL's added conditioning, carried with the text embedding of every UNet row.

SDXL's UNet reads, besides the per-token text states, an added embedding made of the pooled
text of its second encoder and six "time ids" (original size, crop top-left, target size).
pnp-sam builds them once per inversion and per edit (``PnPPipeline.encode_prompts``) and every
batch carries the rows' own: the inversion's, the source row's (the inversion's again), the
negative prompt's and each target prompt's. SD 1.x/2.x have none (``None`` everywhere).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class AddedConditions:
    """SDXL's added conditioning of B rows: ``text_embeds`` (B, P) pooled text of the second
    text encoder, ``time_ids`` (B, 6): (height, width, crop top, crop left, height, width) of
    the image in pixels, as diffusers' ``StableDiffusionXLPipeline`` builds them."""

    text_embeds: torch.Tensor
    time_ids: torch.Tensor

    def __post_init__(self) -> None:
        if self.text_embeds.shape[0] != self.time_ids.shape[0]:
            raise ValueError(
                f"added conditioning of {self.text_embeds.shape[0]} pooled rows and "
                f"{self.time_ids.shape[0]} time-id rows"
            )

    @property
    def rows(self) -> int:
        return int(self.text_embeds.shape[0])

    def expand(self, k: int) -> AddedConditions:
        """One row repeated ``k`` times (views, no copy)."""
        return AddedConditions(self.text_embeds.expand(k, -1), self.time_ids.expand(k, -1))

    def __getitem__(self, rows: slice) -> AddedConditions:
        return AddedConditions(self.text_embeds[rows], self.time_ids[rows])

    @staticmethod
    def cat(parts: Sequence[AddedConditions]) -> AddedConditions:
        return AddedConditions(
            torch.cat([p.text_embeds for p in parts]), torch.cat([p.time_ids for p in parts])
        )


def unet_inputs(hidden: torch.Tensor, added: AddedConditions | None) -> dict[str, Any]:
    """The UNet's conditioning keywords for rows with text states ``hidden`` (B, L, D) and,
    for SDXL, their added conditioning (B rows)."""
    if added is None:
        return {"encoder_hidden_states": hidden}
    if added.rows != hidden.shape[0]:
        raise RuntimeError(f"{hidden.shape[0]} text rows but {added.rows} added-condition rows")
    return {
        "encoder_hidden_states": hidden,
        "added_cond_kwargs": {"text_embeds": added.text_embeds, "time_ids": added.time_ids},
    }
