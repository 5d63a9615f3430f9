"""Real SD 1.5 and SD 2.1 UNet architectures (random weights): every PnP site, one injected step.

The UNets are built on the meta device and filled by copies (``shaped_unet``), not drawn by
torch's initialisers, and run one step at a 16x16 latent: every site still runs at its own
grid (the residual block at a quarter of the latent side, as 16x16 is of SD's 64x64).
"""

from __future__ import annotations

import pytest
import torch

from pnpsam.config import PAPER_ATTENTION_BLOCKS, PAPER_RESIDUAL_BLOCKS
from pnpsam.core.injection import (
    BatchLayout,
    FeatureInjector,
    InjectionEvent,
    InjectionStep,
    find_injection_sites,
)
from pnpsam.models.backbones import from_unet_config
from pnpsam.models.tiny import Arch, shaped_unet

LATENT = 16


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["sd15", "sd2"])
def test_real_architecture_exposes_sites_and_injects_one_step(arch: Arch) -> None:
    unet = shaped_unet(arch, seed=0)
    backbone = from_unet_config(arch, dict(unet.config))
    assert backbone.pnp_blocks() == (PAPER_RESIDUAL_BLOCKS, PAPER_ATTENTION_BLOCKS)
    sites = find_injection_sites(unet, PAPER_RESIDUAL_BLOCKS, PAPER_ATTENTION_BLOCKS)
    assert sites.residual == {4: "up_blocks.1.resnets.1.conv2"}
    assert len(sites.attention) == 8
    assert unet.get_submodule(sites.residual[4]).out_channels == 1280

    layout = BatchLayout(num_prompts=1, has_source=True)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(layout.size, 4, LATENT, LATENT, generator=generator)
    text = torch.randn(layout.size, 77, unet.config.cross_attention_dim, generator=generator)
    events: list[InjectionEvent] = []
    with FeatureInjector(unet, sites) as injector, torch.no_grad():
        injector.observers.append(events.append)
        step = InjectionStep(0, 981, residual=True, attention=True, layout=layout)
        with injector.step(step, (LATENT, LATENT)):
            out = unet(latents, 981, encoder_hidden_states=text).sample
    assert out.shape == latents.shape and torch.isfinite(out).all()
    fired = {(e.kind, e.block) for e in events}
    assert fired == {("residual", 4)} | {
        (kind, b) for kind in ("query", "key") for b in PAPER_ATTENTION_BLOCKS
    }
    residual = next(e.features for e in events if e.kind == "residual")
    assert residual.shape == (3, 1280, LATENT // 4, LATENT // 4)  # the paper's 16x16 of 64x64
    for event in events:
        assert torch.equal(event.features[1:], event.features[:1].expand_as(event.features[1:]))
