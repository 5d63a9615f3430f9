"""PnP feature injection: residual features by a removable hook, self-attention Q/K by a processor.

Sites are found by module name. Decoder layers are numbered like LDM's ``output_blocks``: the
resnets of ``unet.up_blocks`` in order, so in SD 1.x/2.x output block ``n`` is
``up_blocks[n // 3].resnets[n % 3]`` and its self-attention is
``up_blocks[n // 3].attentions[n % 3].transformer_blocks[0].attn1``. The paper's residual site,
output block 4, is ``up_blocks[1].resnets[1]``. SDXL's decoder has three up blocks (no attention
in the last), numbered the same way: its equivalent of the paper's sites is output block 1,
``up_blocks[0].resnets[1]``, and attention blocks 1-5 (``Backbone.pnp_blocks``,
docs/backbones.md).

What is injected:
- residual: the output of the resnet's ``conv2`` — the residual branch after conv2, before the
  skip add and ``output_scale_factor`` — so every row keeps its own skip input;
- attention: the self-attention queries and keys (not values).
The guided rows (uncond and cond of every prompt) receive the source row's features,
``replace``-d (PnP) or ``blend``-ed with weight alpha, optionally only at subject positions
(a soft mask resized to each layer's grid). With a subject, three settings shape where the
mask applies (see ``InjectionSettings``): coarse layers and the first steps may inject
everywhere, and self-attention may take the source's logits for every query/key pair that
involves a subject token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention

from pnpsam.config import InjectionMode
from pnpsam.errors import InputError

if TYPE_CHECKING:
    from pnpsam.core.features import SourceFeatures

InjectionKind = Literal["residual", "query", "key"]
# How a subject mask is reduced to a coarser grid: by area (share covered) or cover (any touch).
CellReduction = Literal["area", "cover"]


class InjectionSiteError(InputError):
    """The UNet lacks a requested injection site (another decoder layout, or a block number
    of another backbone's numbering)."""


@dataclass(frozen=True)
class BatchLayout:
    """Row layout of every UNet batch in PnP sampling: ``[source?, uncond x k, cond x k]``.

    The source row (the source stream, conditioned on the inversion prompt) is present only on
    steps that inject; ``uncond`` rows carry the negative prompt and ``cond`` rows the targets.
    """

    num_prompts: int
    has_source: bool

    @property
    def offset(self) -> int:
        return 1 if self.has_source else 0

    @property
    def size(self) -> int:
        return self.offset + 2 * self.num_prompts

    @property
    def source(self) -> slice:
        if not self.has_source:
            raise ValueError("this batch has no source row")
        return slice(0, 1)

    @property
    def uncond(self) -> slice:
        return slice(self.offset, self.offset + self.num_prompts)

    @property
    def cond(self) -> slice:
        return slice(self.offset + self.num_prompts, self.size)

    @property
    def guided(self) -> slice:
        """Rows that receive injected features: every uncond and cond row."""
        return slice(self.offset, self.size)

    def check(self, batch: torch.Tensor) -> None:
        if batch.shape[0] != self.size:
            raise RuntimeError(f"batch of {batch.shape[0]} rows does not match layout {self}")


@dataclass(frozen=True)
class InjectionStep:
    """What to inject during one UNet call; built by the sampler for each step."""

    index: int  # sampling step index, 0 = first (noisiest)
    timestep: int
    residual: bool  # inject residual features this step
    attention: bool  # inject self-attention Q/K this step
    layout: BatchLayout


@dataclass
class InjectionEvent:
    """Passed to observers after every injection: the tensor as the UNet will use it."""

    step: InjectionStep
    kind: InjectionKind
    block: int  # LDM output block number
    features: torch.Tensor  # residual (B, C, h, w); query/key (B, N, C)


@dataclass(frozen=True)
class InjectionSites:
    """Module names of the injection sites, keyed by LDM output block number."""

    residual: dict[int, str]  # block -> name of the resnet's conv2 module
    attention: dict[int, str]  # block -> name of the attn1 Attention module
    num_output_blocks: int


def find_injection_sites(
    unet: UNet2DConditionModel,
    residual_blocks: tuple[int, ...],
    attention_blocks: tuple[int, ...],
) -> InjectionSites:
    """Resolve LDM output block numbers to module names; ``InjectionSiteError`` if missing."""
    modules = dict(unet.named_modules())
    up_blocks = getattr(unet, "up_blocks", None)
    if up_blocks is None or len(up_blocks) == 0:
        raise InjectionSiteError(
            f"{type(unet).__name__} has no up_blocks: not an SD 1.x/2.x or SDXL UNet, PnP sites "
            "missing"
        )
    # block number -> (up block index, layer index within it)
    numbering: list[tuple[int, int]] = []
    for b, block in enumerate(up_blocks):
        numbering.extend((b, j) for j in range(len(getattr(block, "resnets", []))))

    def locate(block: int, what: str) -> tuple[int, int]:
        if not 0 <= block < len(numbering):
            raise InjectionSiteError(
                f"{what} block {block} does not exist: this UNet has output blocks "
                f"0-{len(numbering) - 1}"
            )
        return numbering[block]

    residual: dict[int, str] = {}
    for block in residual_blocks:
        b, j = locate(block, "residual")
        name = f"up_blocks.{b}.resnets.{j}.conv2"
        if not isinstance(modules.get(name), torch.nn.Conv2d):
            raise InjectionSiteError(f"residual block {block}: {name} is not a Conv2d in this UNet")
        residual[block] = name
    attention: dict[int, str] = {}
    for block in attention_blocks:
        b, j = locate(block, "attention")
        name = f"up_blocks.{b}.attentions.{j}.transformer_blocks.0.attn1"
        module = modules.get(name)
        if not isinstance(module, Attention) or module.is_cross_attention:
            raise InjectionSiteError(
                f"attention block {block}: this UNet has no self-attention {name} "
                f"(up_blocks.{b} is {type(up_blocks[b]).__name__})"
            )
        attention[block] = name
    return InjectionSites(residual, attention, len(numbering))


@dataclass
class InjectionSettings:
    """How features are injected; fixed for a whole edit."""

    mode: InjectionMode = "replace"
    alpha: float = 1.0  # weight of the source features in blend mode
    # (1, 1, H, W) soft subject mask in [0, 1] at any resolution, or None for everywhere.
    mask: torch.Tensor | None = None
    # With a mask: layers whose grid side is at most this fraction of the latent side, and the
    # first ``full_steps`` sampling steps, inject everywhere (see PnPConfig).
    full_scale: float = 0.0
    full_steps: int = 0
    # With a mask: "source" = self-attention logits of pairs involving a subject token are the
    # source row's (see PnPSelfAttentionProcessor); "own" = plain masked Q/K injection.
    background_attention: Literal["own", "source"] = "own"
    # With a mask: which features it limits ("all", "residual" or "attention").
    masked_features: Literal["all", "residual", "attention"] = "all"
    # With a mask: "centered" = background positions get the source's features re-centred on
    # the guided row's own background mean (per channel); "none" = nothing.
    background_injection: Literal["none", "centered"] = "none"
    # With a mask: "area" = cells weighted by the subject's share of them; "cover" = any cell
    # the subject touches counts fully (max-pooled).
    mask_cells: CellReduction = "area"
    # With a mask: the injection weight at background positions (0 = subject only).
    background_weight: float = 0.0
    _grid_masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)
    # the same, on the device and dtype a layer asked for (one conversion, not one per call)
    _grid_masks_on: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = field(
        default_factory=dict, repr=False
    )

    def weight(self) -> float:
        return 1.0 if self.mode == "replace" else float(self.alpha)

    def mask_at(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Injection weights (1, 1, h, w) in [0, 1] on a (h, w) grid: the subject mask reduced
        per ``mask_cells`` (area-averaged or max-pooled; bilinear when upsampled), raised to
        ``background_weight`` outside the subject."""
        if self.mask is None:
            raise ValueError("mask_at needs a subject mask; these injection settings have none")
        key = (height, width)
        converted = (height, width, like.device, like.dtype)
        if converted not in self._grid_masks_on:
            if key not in self._grid_masks:
                mask = mask_on_grid(self.mask, key, self.mask_cells)
                self._grid_masks[key] = mask + (1.0 - mask) * self.background_weight
            self._grid_masks_on[converted] = self._grid_masks[key].to(like.device, like.dtype)
        return self._grid_masks_on[converted]


def mask_on_grid(
    mask: torch.Tensor, grid: tuple[int, int], cells: CellReduction = "area"
) -> torch.Tensor:
    """A (1, 1, H, W) soft mask in [0, 1] on a (h, w) grid: reduced by area (the share of each
    cell covered) or, ``cells="cover"``, by max (any touched cell counts fully); bilinear when
    the grid is finer than the mask."""
    mask = mask.float()
    if mask.shape[-2:] != grid:
        if mask.shape[-1] <= grid[1]:
            mask = F.interpolate(mask, size=grid, mode="bilinear")
        elif cells == "cover":
            mask = F.adaptive_max_pool2d(mask, grid)
        else:
            mask = F.interpolate(mask, size=grid, mode="area")
    return mask.clamp(0.0, 1.0)


def _recentred_background(
    source: torch.Tensor, guided: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Injection target (B, ...) for ``guided`` rows: the source on the subject, and on the
    background the source minus its background mean plus each row's own background mean, per
    channel. ``mask`` broadcasts over the features: (1, 1, h, w) for (B, C, h, w) maps,
    (1, N, 1) for (B, N, C) tokens."""
    spatial = (2, 3) if source.ndim == 4 else (1,)
    background = 1.0 - mask
    total = background.sum(dim=spatial, keepdim=True).clamp_min(1e-6)
    source_mean = (source * background).sum(dim=spatial, keepdim=True) / total
    own_mean = (guided * background).sum(dim=spatial, keepdim=True) / total
    recentred = source - source_mean + own_mean
    return torch.lerp(recentred, source.expand_as(guided), mask)


def token_grid(num_tokens: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of ``num_tokens`` attention tokens at a downsampling of the latent."""
    height, width = latent_hw
    for factor in (1, 2, 4, 8, 16, 32):
        h, w = -(-height // factor), -(-width // factor)
        if h * w == num_tokens:
            return h, w
    raise RuntimeError(f"{num_tokens} tokens match no downsampling of a {height}x{width} latent")


class FeatureInjector:
    """Installs PnP injection on a UNet for the duration of a ``with`` block.

    ``with FeatureInjector(unet, sites, settings) as injector:`` sets attention processors on the
    chosen attn1 modules and forward hooks on the chosen ``conv2`` modules; leaving the block
    restores the original processors and removes the hooks. Per-step state is given explicitly:
    ``with injector.step(InjectionStep(...)): unet(...)``; outside a step nothing is injected.

    ``features`` (``SourceFeatures``), when set, records the source row's features on steps
    whose batch has a source row, and supplies them on injecting steps whose batch has none
    (``replay``: the sampler then leaves the source row out).
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        sites: InjectionSites,
        settings: InjectionSettings | None = None,
    ) -> None:
        self.unet = unet
        self.sites = sites
        self.settings = settings or InjectionSettings()
        self.observers: list[Callable[[InjectionEvent], None]] = []
        self.latent_hw: tuple[int, int] | None = None
        self._step: InjectionStep | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._saved_processors: dict[str, object] | None = None
        self.features: SourceFeatures | None = None
        self.replay = False  # inject ``features`` instead of running the source row

    # -- installation --------------------------------------------------------------------
    def __enter__(self) -> FeatureInjector:
        modules = dict(self.unet.named_modules())
        processors = dict(self.unet.attn_processors)
        self._saved_processors = dict(processors)
        for block, name in self.sites.attention.items():
            processors[f"{name}.processor"] = PnPSelfAttentionProcessor(self, block)
        self.unet.set_attn_processor(processors)
        for block, name in self.sites.residual.items():
            hook = self._residual_hook(block)
            self._handles.append(modules[name].register_forward_hook(hook))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if self._saved_processors is not None:
            self.unet.set_attn_processor(self._saved_processors)
            self._saved_processors = None

    @contextmanager
    def step(self, state: InjectionStep, latent_hw: tuple[int, int]) -> Iterator[None]:
        """Inject according to ``state`` for UNet calls inside this block (latent (h, w))."""
        self._step, self.latent_hw = state, latent_hw
        try:
            yield
        finally:
            self._step = None

    # -- the injection itself ------------------------------------------------------------
    def inject(
        self, features: torch.Tensor, kind: InjectionKind, block: int, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Return ``features`` (B, ...) with guided rows moved to the source row.

        ``torch.lerp`` is exact at weight 1, so ``replace`` (and an all-ones mask) copies the
        source features bit for bit.
        """
        state = self._step
        if state is None:
            raise RuntimeError(
                f"{kind} injection at block {block} outside a sampling step: call the UNet "
                "inside FeatureInjector.step(...)"
            )
        layout = state.layout
        layout.check(features)
        if layout.has_source:
            source = features[layout.source]
            if self.features is not None:
                self.features.record(state.timestep, kind, block, source)
        else:  # replay: the source row's features as recorded, bit for bit
            if self.features is None:
                raise RuntimeError(
                    f"{kind} injection at block {block} in a batch without a source row, and "
                    "no recorded source features to replay"
                )
            source = self.features.get(state.timestep, kind, block)
        guided = features[layout.guided]
        weight: float | torch.Tensor = self.settings.weight()
        mask = self.subject_weight(grid, features, kind)  # (1, 1, h, w) or None = everywhere
        target = source.expand_as(guided)
        if mask is not None:
            if features.ndim == 3:  # tokens (B, N, C): flatten the grid row-major like diffusers
                mask = mask.flatten(2).transpose(1, 2)
            if self.settings.background_injection == "centered":
                target = _recentred_background(source, guided, mask)
            else:
                weight = mask * weight
        mixed = torch.lerp(guided, target, weight)
        out = torch.cat([source, mixed], dim=0) if layout.has_source else mixed
        for observer in self.observers:
            observer(InjectionEvent(state, kind, block, out))
        return out

    def subject_weight(
        self, grid: tuple[int, int], like: torch.Tensor, kind: InjectionKind = "query"
    ) -> torch.Tensor | None:
        """The subject mask (1, 1, h, w) on a layer's ``grid`` for this step and feature kind,
        or None where the injection covers everything (no mask, features not masked, a coarse
        layer, or one of the first steps)."""
        settings = self.settings
        state = self._step
        if settings.mask is None or state is None or state.index < settings.full_steps:
            return None
        family = "residual" if kind == "residual" else "attention"
        if settings.masked_features not in ("all", family):
            return None
        if self.latent_hw is not None and grid[0] <= settings.full_scale * self.latent_hw[0]:
            return None
        return settings.mask_at(*grid, like=like)

    def active(self, kind: Literal["residual", "attention"]) -> bool:
        state = self._step
        if state is None or not (state.layout.has_source or self.replay):
            return False
        return state.residual if kind == "residual" else state.attention

    def _residual_hook(
        self, block: int
    ) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor | None]:
        def hook(
            module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
        ) -> torch.Tensor | None:
            if not self.active("residual"):
                return None
            return self.inject(output, "residual", block, (output.shape[-2], output.shape[-1]))

        return hook


class PnPSelfAttentionProcessor:
    """Self-attention whose queries and keys come from the source row during injection steps.

    Equivalent to diffusers' ``AttnProcessor2_0`` for the plain self-attention of a transformer
    block (3-D hidden states, no spatial/group norm); attention itself is torch's
    ``scaled_dot_product_attention``. With a subject mask and ``background_attention="source"``
    the logits are composed instead (``_composed_attention``), which materialises the (B, heads,
    N, N) logits: about 0.8 GB per prompt at SD's 64x64 layers in fp16.
    """

    def __init__(self, injector: FeatureInjector, block: int) -> None:
        self.injector = injector
        self.block = block

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if hidden_states.ndim != 3 or attn.spatial_norm is not None or attn.group_norm is not None:
            raise InjectionSiteError(
                "PnP attention injection expects a transformer block's plain self-attention"
            )
        batch, tokens, _ = hidden_states.shape
        residual = hidden_states
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        subject: torch.Tensor | None = None
        if self.injector.active("attention"):
            latent_hw = self.injector.latent_hw
            if latent_hw is None:  # step() sets it; a hand-driven injector may not have
                raise RuntimeError("attention injection needs the latent (h, w) from step()")
            grid = token_grid(tokens, latent_hw)
            query = self.injector.inject(query, "query", self.block, grid)
            key = self.injector.inject(key, "key", self.block, grid)
            if self.injector.settings.background_attention == "source":
                subject = self.injector.subject_weight(grid, like=query)
        if attention_mask is not None:
            attention_mask = mask_bias(attn, attention_mask, tokens, batch)
        query, key, value = split_heads(attn, query, key, value)
        if subject is None:
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        else:
            out = self._composed_attention(attn, query, key, value, subject, attention_mask)
        return merge_heads(attn, out, residual, query.dtype)

    def _composed_attention(
        self,
        attn: Attention,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        subject: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Attention (B, heads, N, d) whose guided rows take the source row's logits for every
        pair (query i, key j) with a subject token: weight ``1 - (1 - m_i)(1 - m_j)`` for the
        subject mask m (flattened like the tokens), their own logits elsewhere; values stay
        each row's own."""
        state = self.injector._step
        assert state is not None
        layout = state.layout
        if not layout.has_source:
            raise InjectionSiteError(
                "background_attention='source' needs the source row's logits; it cannot run "
                "from replayed source features"
            )
        logits = (query @ key.transpose(-1, -2)) * attn.scale  # (B, heads, N, N)
        if attention_mask is not None:
            logits = logits + attention_mask
        m = subject.flatten()  # (N,)
        weight = 1.0 - (1.0 - m)[:, None] * (1.0 - m)[None, :]  # (N, N)
        guided = torch.lerp(
            logits[layout.guided], logits[layout.source].expand_as(logits[layout.guided]), weight
        )
        logits = torch.cat([logits[layout.source], guided], dim=0)
        return logits.softmax(dim=-1) @ value


# -- attention as diffusers' AttnProcessor2_0 does it, shared by this project's processors --
def split_heads(
    attn: Attention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projections (B, N, heads x d) -> (B, heads, N, d), with the module's Q/K norms applied."""
    batch, head_dim = query.shape[0], key.shape[-1] // attn.heads
    query, key, value = (
        x.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for x in (query, key, value)
    )
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, value


def mask_bias(
    attn: Attention, attention_mask: torch.Tensor, key_tokens: int, batch: int
) -> torch.Tensor:
    """diffusers' ``attention_mask`` as an additive (B, heads, N or 1, key_tokens) bias."""
    mask = attn.prepare_attention_mask(attention_mask, key_tokens, batch)
    return mask.view(batch, attn.heads, -1, mask.shape[-1])


def merge_heads(
    attn: Attention, out: torch.Tensor, residual: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Attention output (B, heads, N, d) -> the module's output: heads joined, the output
    projection and dropout, the residual connection and output rescaling."""
    batch, heads, _, head_dim = out.shape
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(dtype)
    out = attn.to_out[1](attn.to_out[0](out))
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor
