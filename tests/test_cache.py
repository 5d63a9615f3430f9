"""Re-edits: inversion steps that follow the sampling steps, source-feature reuse, disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pnpsam.cli import main
from pnpsam.config import EditConfig, apply_preset


@pytest.mark.parametrize("steps", [20, 30])
def test_inversion_steps_follow_the_sampling_steps(
    tiny_model_dir: Path, photo: Image.Image, tmp_path: Path, steps: int
) -> None:
    image = tmp_path / "photo.png"
    photo.resize((32, 32)).save(image)
    out = tmp_path / "out"
    args = ["edit", str(image), "--prompt", "a red robot", "--out", str(out), "--quiet"]
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--size", "32"]
    assert main([*args, *common, "--steps", str(steps)]) == 0
    record = json.loads((out / "photo.json").read_text())
    assert record["config"]["inversion"]["steps"] == steps  # the record keeps the number run
    assert record["unet_evaluations"] == steps + int(0.8 * steps) + 2 * steps


def test_presets_keep_the_ports_inversion_and_the_default_follows() -> None:
    assert EditConfig().inversion.steps is None
    assert apply_preset(EditConfig(), "pnp-diffusers").inversion.steps == 999
    assert apply_preset(EditConfig(), "paper").inversion.steps == 999
    cfg = EditConfig()
    cfg.pnp.steps = 20
    assert cfg.resolve_derived().inversion.steps == 20
