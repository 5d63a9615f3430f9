"""Real SD 1.5 and SD 2.1 UNet architectures (random weights): every PnP site, one injected step."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from pnpsam.config import PAPER_ATTENTION_BLOCKS, PAPER_RESIDUAL_BLOCKS
from pnpsam.core.injection import (
    BatchLayout,
    FeatureInjector,
    InjectionEvent,
    InjectionStep,
    find_injection_sites,
)
from pnpsam.models.tiny import SD15_DOWN_BLOCKS, SD15_UP_BLOCKS

SD_COMMON = {
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": SD15_DOWN_BLOCKS,
    "up_block_types": SD15_UP_BLOCKS,
}
# Values of the public unet/config.json of each checkpoint.
ARCHITECTURES = {
    "sd15": {**SD_COMMON, "sample_size": 64, "cross_attention_dim": 768, "attention_head_dim": 8},
    "sd21": {
        **SD_COMMON,
        "sample_size": 96,
        "cross_attention_dim": 1024,
        "attention_head_dim": (5, 10, 20, 20),
        "use_linear_projection": True,
        "upcast_attention": True,
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_real_architecture_exposes_sites_and_injects_one_step(name: str) -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**ARCHITECTURES[name]).eval()
    sites = find_injection_sites(unet, PAPER_RESIDUAL_BLOCKS, PAPER_ATTENTION_BLOCKS)
    assert sites.residual == {4: "up_blocks.1.resnets.1.conv2"}
    assert len(sites.attention) == 8
    assert unet.get_submodule(sites.residual[4]).out_channels == 1280

    layout = BatchLayout(num_prompts=1, has_source=True)
    latents = torch.randn(layout.size, 4, 64, 64)
    text = torch.randn(layout.size, 77, unet.config.cross_attention_dim)
    events: list[InjectionEvent] = []
    with FeatureInjector(unet, sites) as injector, torch.no_grad():
        injector.observers.append(events.append)
        step = InjectionStep(0, 981, residual=True, attention=True, layout=layout)
        with injector.step(step, (64, 64)):
            out = unet(latents, 981, encoder_hidden_states=text).sample
    assert out.shape == latents.shape and torch.isfinite(out).all()
    fired = {(e.kind, e.block) for e in events}
    assert fired == {("residual", 4)} | {
        (kind, b) for kind in ("query", "key") for b in PAPER_ATTENTION_BLOCKS
    }
    residual = next(e.features for e in events if e.kind == "residual")
    assert residual.shape == (3, 1280, 16, 16)  # 16x16 at 512 px, as in the paper
    for event in events:
        assert torch.equal(event.features[1:], event.features[:1].expand_as(event.features[1:]))
