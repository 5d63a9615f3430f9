"""The toy model's training script, end to end on a tiny budget: a loadable, deterministic
Stable Diffusion folder, and a second round that continues the first without moving its latents."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from pnpsam.config import model_defaults
from pnpsam.toyworld.model import ToyModelConfig, build_text_encoder, build_tokenizer, build_unet
from pnpsam.toyworld.train import (
    TrainConfig,
    _sized_steps,
    main,
    render_dataset,
    tokenize,
    train_unet,
)

_TINY = [
    "--dataset-size", "24", "--vae-steps", "2", "--vae-batch", "4", "--decoder-steps", "2",
    "--unet-steps", "2", "--unet-batch", "4", "--warmup-steps", "1", "--save-every", "1",
    "--threads", "1", "--log-every", "1",
]  # fmt: skip


def _train(out: Path, work: Path, *extra: str) -> None:
    main(["--out", str(out), "--work-dir", str(work), *_TINY, *extra])


def _weights(folder: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {p.parent.name: load_file(p) for p in sorted(folder.glob("*/*.safetensors"))}


def test_training_writes_a_deterministic_fp16_pipeline_folder(tmp_path: Path) -> None:
    _train(tmp_path / "a", tmp_path / "work_a")
    _train(tmp_path / "b", tmp_path / "work_b")
    first, second = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert set(first) == {"unet", "vae", "text_encoder"}
    assert model_defaults(str(tmp_path / "a")) == model_defaults("toy")  # its edit settings
    for part, tensors in first.items():
        assert {t.dtype for t in tensors.values()} == {torch.float16}, part
        assert all(torch.equal(t, second[part][k]) for k, t in tensors.items()), part
    for config in (tmp_path / "a").glob("*/config.json"):
        assert "_name_or_path" not in json.loads(config.read_text()), config  # no local paths
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "a", local_files_only=True)
    assert pipe.vae.config.scaling_factor == 1.0
    # The latents the UNet trains on are the folded ones: zero mean, unit std per channel.
    latents = torch.load(tmp_path / "work_a" / "latents.pt")
    assert torch.allclose(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4)


def test_second_round_continues_the_first_on_the_same_latents(tmp_path: Path) -> None:
    first = tmp_path / "round1"
    _train(first, tmp_path / "work1")
    work2 = tmp_path / "work2"
    _train(tmp_path / "round2", work2, "--vae-only", "--vae-resume", str(first / "vae"),
           "--vae-steps", "0")  # fmt: skip
    # Re-encoding with the shipped (fp16, folded) VAE is not folded again: same latents.
    before, after = torch.load(tmp_path / "work1" / "latents.pt"), torch.load(work2 / "latents.pt")
    assert (after - before).abs().max() < 0.05 * before.abs().max()
    # Another seed: a UNet built from scratch would start from other random weights (measured:
    # squared distance 105% of round 1's norm), so only a real resume passes the check below.
    _train(tmp_path / "round2", work2, "--unet-resume", str(first), "--decoder-steps", "0",
           "--unet-steps", "1", "--seed", "1")  # fmt: skip
    old, new = _weights(first), _weights(tmp_path / "round2")
    # One optimiser step away from round 1 (a fresh UNet would differ by about its whole norm).
    moved = sum((t.float() - old["unet"][k].float()).norm() ** 2 for k, t in new["unet"].items())
    size = sum(t.float().norm() ** 2 for t in old["unet"].values())
    assert 0 < float(moved) < 0.05**2 * float(size)


def test_toy_v2_has_a_32x32_latent_with_the_paper_layer_at_8x8(tmp_path: Path) -> None:
    """``--latent-size 32`` (toy-v2, prepared for a GPU run): x2 VAE, UNet levels 32/16/8/4, so
    the paper's residual site ``up_blocks[1].resnets[1]`` (block 3 of this one-layer UNet) runs
    at 8x8, block 4 at 16x16, and the last decoder level (self-attention too) at 32x32."""
    _train(tmp_path / "v2", tmp_path / "work_v2", "--latent-size", "32")
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "v2", local_files_only=True)
    assert pipe.unet.config.sample_size == 32
    latent = pipe.vae.encode(torch.zeros(1, 3, 64, 64, dtype=pipe.vae.dtype)).latent_dist.mean
    assert latent.shape == (1, 4, 32, 32)
    sizes: dict[str, int] = {}
    hooks = [
        pipe.unet.up_blocks[b]
        .resnets[j]
        .conv2.register_forward_hook(
            lambda m, i, o, name=f"{b}.{j}": sizes.setdefault(name, o.shape[-1])
        )
        for b in range(4)
        for j in range(2)
    ]
    with torch.no_grad():
        pipe.unet(latent, 10, encoder_hidden_states=torch.zeros(1, 16, 64, dtype=latent.dtype))
    for hook in hooks:
        hook.remove()
    assert (sizes["1.1"], sizes["2.0"], sizes["3.0"]) == (8, 16, 32)


def test_rendering_in_processes_gives_the_same_dataset() -> None:
    one, captions = render_dataset(9, seed=3)
    two, captions_two = render_dataset(9, seed=3, workers=2)
    assert captions == captions_two and np.array_equal(one, two)
    assert len({img.tobytes() for img in one}) == 9  # each scene drawn with its own seed


def test_a_time_budget_sizes_the_unet_schedule_at_the_end_of_warm_up() -> None:
    model_cfg = ToyModelConfig()
    tokenizer = build_tokenizer(model_cfg)
    torch.manual_seed(0)
    unet, text_encoder = build_unet(model_cfg), build_text_encoder(model_cfg, tokenizer)
    ids = tokenize(tokenizer, ["a red circle on grass", "a blue square on snow"])
    cfg = replace(TrainConfig(), unet_steps=40, unet_batch=2, warmup_steps=10, save_every=100)
    saves: list[int] = []
    unet_ema, _ = train_unet(
        unet, text_encoder, torch.randn(4, 4, 16, 16), ids[[0, 1, 0, 1]],
        tokenize(tokenizer, [""])[0], cfg, on_save=lambda step, *_: saves.append(step),
        budget_s=0.0,
    )  # fmt: skip
    # No time left after warm-up: the run takes the step it is on, saves and ends there.
    assert saves == [11] and unet_ema.optimization_step == 11
    assert _sized_steps(cfg, budget_s=60.0, elapsed_s=10.0, s_per_step=0.5, done=10) == 40
    assert _sized_steps(cfg, budget_s=60.0, elapsed_s=10.0, s_per_step=2.0, done=10) == 35
