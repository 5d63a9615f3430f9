"""Keep the subject's words out of the background: cross-attention restricted by the subject mask.

With a subject, the target prompt names it ("a yellow *circle* on sand"). Free background
positions that read those tokens may draw a second subject, and the edit then keeps the wrong
one. Here, in every cross-attention layer (``attn2``), the *cond* rows' background queries get
their logits to the subject's tokens lowered by ``log(m)`` (m = the subject mask on the layer's
grid, floored at ``1e-4``): at the subject nothing changes, in the background those tokens get
no attention. The source row and the unconditional rows are untouched.

Installed like the injector: ``with SubjectTextAttention(unet, mask, latent_hw) as text:``
sets processors on the ``attn2`` modules and restores the previous ones on exit;
``text.tokens`` holds the (k, L) subject-token weights of the prompts being sampled.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import TracebackType

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from pnpsam.core.injection import (
    CellReduction,
    InjectionSiteError,
    mask_bias,
    mask_on_grid,
    merge_heads,
    split_heads,
    token_grid,
)

# Attention weight left to a subject token at a pure-background query (its logit - 9.2).
_FLOOR = 1e-4


class SubjectWordsWarning(UserWarning):
    """A target prompt does not contain any of the subject words: nothing is restricted for it."""


def subject_token_weights(
    input_ids: torch.Tensor, word_ids: Sequence[Sequence[int]], prompts: Sequence[str]
) -> torch.Tensor:
    """(k, L) float weights: 1 at every occurrence of a subject word's token sequence.

    ``input_ids`` (k, L) are the prompts' token ids as the text encoder saw them; ``word_ids``
    holds one token-id sequence per subject word (no start/end tokens). A prompt that contains
    none of the words gets a row of zeros and a ``SubjectWordsWarning``.
    """
    weights = torch.zeros(input_ids.shape, dtype=torch.float32)
    for row, ids in enumerate(input_ids.tolist()):
        for word in word_ids:
            n = len(word)
            for start in range(len(ids) - n + 1):
                if n and ids[start : start + n] == list(word):
                    weights[row, start : start + n] = 1.0
        if not weights[row].any():
            warnings.warn(
                f"the target prompt {prompts[row]!r} contains none of the subject words; "
                "its background may still draw the subject",
                SubjectWordsWarning,
                stacklevel=3,
            )
    return weights


class SubjectTextAttention:
    """Cross-attention that hides the subject's tokens from background queries (module doc)."""

    def __init__(
        self,
        unet: UNet2DConditionModel,
        mask: torch.Tensor,
        latent_hw: tuple[int, int],
        cells: CellReduction = "area",
    ) -> None:
        """``mask`` (1, 1, H, W) soft subject mask in [0, 1]; ``latent_hw`` the latent's (h, w);
        ``cells`` how the mask is reduced to coarser grids (``mask_on_grid``)."""
        self.unet = unet
        self.mask = mask
        self.latent_hw = latent_hw
        self.cells: CellReduction = cells
        self._tokens: torch.Tensor | None = None
        self._any_token = False
        # the tokens on the device and dtype the layers use: copied once per prompt chunk, not
        # per layer and step (a blocking host-to-device copy waits for the GPU)
        self._tokens_on: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._saved: dict[str, object] | None = None
        self._bias: dict[tuple[int, int], torch.Tensor] = {}
        self._bias_on: dict[tuple[tuple[int, int], torch.device, torch.dtype], torch.Tensor] = {}

    @property
    def tokens(self) -> torch.Tensor | None:
        """(k, L) subject-token weights of the prompts being sampled (their cond rows)."""
        return self._tokens

    @tokens.setter
    def tokens(self, tokens: torch.Tensor | None) -> None:
        self._tokens, self._tokens_on = tokens, {}
        # read here, once, not in every layer: ``.any()`` of a device tensor syncs with it
        self._any_token = tokens is not None and bool(tokens.any())

    def __enter__(self) -> SubjectTextAttention:
        processors = dict(self.unet.attn_processors)
        self._saved = dict(processors)
        for name in processors:
            if name.endswith("attn2.processor"):
                processors[name] = _SubjectTextProcessor(self)
        self.unet.set_attn_processor(processors)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:
            self.unet.set_attn_processor(self._saved)
            self._saved = None

    def log_weight(self, tokens: int, like: torch.Tensor) -> torch.Tensor:
        """(N, 1) ``log(max(m, floor))`` of the mask on the grid of ``tokens`` queries."""
        grid = token_grid(tokens, self.latent_hw)
        key = (grid, like.device, like.dtype)
        if key not in self._bias_on:
            if grid not in self._bias:
                mask = mask_on_grid(self.mask, grid, self.cells)
                self._bias[grid] = mask.clamp_min(_FLOOR).log().flatten()[:, None]
            self._bias_on[key] = self._bias[grid].to(device=like.device, dtype=like.dtype)
        return self._bias_on[key]

    def bias(self, batch: int, queries: int, like: torch.Tensor) -> torch.Tensor | None:
        """(batch, 1, N, L) additive logits: zeros except the last k (cond) rows."""
        if self._tokens is None or not self._any_token:
            return None
        k, length = self._tokens.shape
        if k > batch:
            raise RuntimeError(f"{k} prompts' subject tokens for a batch of {batch} rows")
        key = (like.device, like.dtype)
        if key not in self._tokens_on:
            self._tokens_on[key] = self._tokens.to(device=like.device, dtype=like.dtype)
        tokens = self._tokens_on[key]
        cond = self.log_weight(queries, like)[None] * tokens[:, None, :]  # (k, N, L)
        rest = torch.zeros(batch - k, queries, length, device=like.device, dtype=like.dtype)
        return torch.cat([rest, cond])[:, None]


class _SubjectTextProcessor:
    """diffusers' ``AttnProcessor2_0`` for a transformer block's cross-attention, plus the
    subject bias of its ``SubjectTextAttention``."""

    def __init__(self, owner: SubjectTextAttention) -> None:
        self.owner = owner

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if hidden_states.ndim != 3 or encoder_hidden_states is None or attn.group_norm is not None:
            raise InjectionSiteError(
                "subject words need a transformer block's plain cross-attention (3-D states)"
            )
        batch, queries, _ = hidden_states.shape
        residual = hidden_states
        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = split_heads(attn, query, key, value)
        bias = self.owner.bias(batch, queries, query)
        if attention_mask is not None:
            mask = mask_bias(attn, attention_mask, key.shape[2], batch)
            bias = mask if bias is None else bias + mask
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        return merge_heads(attn, out, residual, query.dtype)
