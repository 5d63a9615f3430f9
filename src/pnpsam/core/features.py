"""Source-stream features kept for reuse: recorded from the source row once, replayed later.

The source row of a PnP batch sees only the inverted latents, the inversion's text embedding and
the timestep, and injection never changes it; so the features it gives the injected layers
depend only on the inversion, the sampling grid and the source mode. ``SourceFeatures`` keeps
exact copies of them, by (timestep, kind, block); an edit whose injections they cover runs
without the source row (2 rows per step per prompt instead of 1 + 2 per prompt) and injects the
copies instead. At 512 px in SD 1.5 one photo's features take about 650 MiB in fp16 (see the
README), so the caller bounds them (``max_bytes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from pnpsam.core.injection import InjectionSites, InjectionStep

FeatureId = tuple[int, str, int]  # (timestep, kind: residual/query/key, LDM output block)


@dataclass
class SourceFeatures:
    """Exact copies of the source row's injected features, each (1, C, h, w) or (1, N, C).

    ``record`` adds what a source row gives (skipping ids it has); past ``max_bytes`` the
    recording is abandoned: ``overflowed`` is set and nothing is kept.
    """

    max_bytes: int | None = None
    tensors: dict[FeatureId, torch.Tensor] = field(default_factory=dict)
    overflowed: bool = False
    nbytes: int = 0

    def record(self, timestep: int, kind: str, block: int, source: torch.Tensor) -> None:
        """Keep a copy of ``source`` (1, ...) for (timestep, kind, block)."""
        ident = (int(timestep), kind, block)
        if self.overflowed or ident in self.tensors:
            return
        size = source.element_size() * source.nelement()
        if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
            self.overflowed, self.tensors, self.nbytes = True, {}, 0
            return
        # a copy, not a view: a view would keep the whole batch tensor alive
        self.tensors[ident] = source.detach().clone()
        self.nbytes += size

    def get(self, timestep: int, kind: str, block: int) -> torch.Tensor:
        try:
            return self.tensors[(int(timestep), kind, block)]
        except KeyError:
            raise RuntimeError(
                f"no recorded source features for {kind} block {block} at timestep {timestep}"
            ) from None

    def covers(self, needed: Iterable[FeatureId]) -> bool:
        return not self.overflowed and all(ident in self.tensors for ident in needed)


def needed_features(schedule: Sequence[InjectionStep], sites: InjectionSites) -> set[FeatureId]:
    """The (timestep, kind, block) ids an edit with this schedule and these sites injects."""
    needed: set[FeatureId] = set()
    for state in schedule:
        if state.residual:
            needed.update((state.timestep, "residual", b) for b in sites.residual)
        if state.attention:
            for block in sites.attention:
                needed.update({(state.timestep, "query", block), (state.timestep, "key", block)})
    return needed


def source_feature_bytes(
    unet: torch.nn.Module,
    sites: InjectionSites,
    latent_hw: tuple[int, int],
    residual_steps: int,
    attention_steps: int,
    element_size: int,
) -> int:
    """Bytes ``SourceFeatures`` holds for one photo, from the UNet's shapes (nothing is run).

    ``residual_steps x sum_b C_b h_b w_b + attention_steps x sum_b 2 N_b D_b``, times the element
    size: C_b the channels of residual block b's conv2, (h_b, w_b) its grid; N_b = h_b w_b
    tokens and D_b the query/key width of attention block b. Up block i of n runs at the latent
    grid / 2^(n - 1 - i) (every up block but the last ends by upsampling).
    """
    modules = dict(unet.named_modules())
    up_blocks = len(getattr(unet, "up_blocks", ()))

    def grid(name: str) -> int:
        block = int(name.split(".")[1])  # up_blocks.<i>....
        factor = 2 ** (up_blocks - 1 - block)
        return -(-latent_hw[0] // factor) * -(-latent_hw[1] // factor)

    residual = sum(modules[n].out_channels * grid(n) for n in sites.residual.values())
    attention = sum(
        (modules[n].to_q.out_features + modules[n].to_k.out_features) * grid(n)
        for n in sites.attention.values()
    )
    return element_size * (residual_steps * residual + attention_steps * attention)
