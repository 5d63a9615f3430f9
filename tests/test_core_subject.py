"""Subject-aware editing in the core: mask-aware injection, re-noised background, scheme 3."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.cli import main
from pnpsam.config import ConfigError, EditConfig
from pnpsam.core.callbacks import InjectionRecorder
from pnpsam.core.injection import InjectionEvent, InjectionSettings, token_grid


def _left_half_mask(width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.float32)
    mask[:, : width // 2] = 1.0
    return mask


def test_mask_is_resized_to_every_grid_non_square() -> None:
    mask = torch.zeros(1, 1, 32, 64)
    mask[..., :, :32] = 1.0  # left half of a 64x32 (w x h) image
    settings = InjectionSettings(mask=mask)
    for grid in [(16, 32), (8, 16), (4, 8)]:
        resized = settings.mask_at(*grid, like=torch.zeros(1))
        assert resized.shape == (1, 1, *grid)
        half = grid[1] // 2
        assert torch.all(resized[..., :half] == 1) and torch.all(resized[..., half:] == 0)
    assert token_grid(8 * 16, (16, 32)) == (8, 16)
    assert token_grid(4 * 8, (16, 32)) == (4, 8)
    soft = settings.mask_at(3, 3, like=torch.zeros(1))  # edges fall inside cells: soft values
    assert 0 < soft[0, 0, 0, 1].item() < 1


def _events(editor: PnPEditor, cfg: EditConfig, image, mask) -> list[InjectionEvent]:
    recorder = InjectionRecorder()
    inversion = editor.invert(image, cfg, mask=mask)
    subject = torch.from_numpy(inversion.subject.mask)[None, None]
    editor.pipeline.edit(inversion.latents, ["a red robot"], cfg.pnp, subject, recorder)
    return recorder.events


def test_subject_positions_carry_source_features_background_does_not(
    editor: PnPEditor, small_config: EditConfig
) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (32, 64, 3), np.uint8))
    events = _events(editor, small_config, image, _left_half_mask(64, 32))
    assert {e.kind for e in events} == {"residual", "query", "key"}
    for event in events:
        rows = event.features
        if event.kind == "residual":
            h, w = rows.shape[-2:]
            subject, background = rows[..., : w // 2], rows[..., w // 2 :]
        else:
            h, w = token_grid(rows.shape[1], (16, 32))
            grid = rows.reshape(rows.shape[0], h, w, -1)
            subject, background = grid[:, :, : w // 2], grid[:, :, w // 2 :]
        assert torch.equal(subject[1:], subject[:1].expand_as(subject[1:])), event.kind
        assert not torch.allclose(background[1], background[0]), event.kind


def test_all_subject_mask_is_exactly_plain_pnp(editor: PnPEditor, small_config, photo) -> None:
    plain = editor.edit(photo, "a red robot", small_config)
    inversion = editor.invert(photo, small_config)
    ones = torch.ones(1, 1, 32, 32)
    masked = editor.pipeline.edit(inversion.latents, ["a red robot"], small_config.pnp, ones)
    assert torch.equal(masked, plain.latents)


def test_background_noise_keeps_subject_start(editor: PnPEditor, small_config, photo) -> None:
    small_config.pnp.background_noise = 1.0
    inversion = editor.invert(photo, small_config)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0
    start = editor.pipeline.start_latent(inversion.latents, small_config.pnp, mask)
    x_T = inversion.latents.at(editor.pipeline.sampling_timesteps(10)[0])
    assert torch.equal(start[..., :8], x_T[..., :8])  # subject (left half of the latent)
    assert not torch.allclose(start[..., 8:], x_T[..., 8:])
    assert torch.equal(editor.pipeline.start_latent(inversion.latents, small_config.pnp), x_T)


def test_dim_background_is_what_gets_inverted(editor: PnPEditor, small_config) -> None:
    image = Image.new("RGB", (64, 32), (200, 200, 200))
    small_config.weaken.background = "dim"
    small_config.weaken.dim_factor = 0.5
    inversion = editor.invert(image, small_config, mask=_left_half_mask(64, 32))
    pixels = np.asarray(inversion.inverted_image, np.float32)
    assert abs(pixels[:, :20].mean() - 200) <= 1  # subject untouched
    assert abs(pixels[:, 44:].mean() - 100) <= 1  # background x 0.5
    assert np.asarray(inversion.image).mean() == pytest.approx(200, abs=1)


def test_weakening_without_a_subject_is_refused(editor: PnPEditor, small_config, photo) -> None:
    small_config.weaken.background = "dim"
    with pytest.raises(ConfigError, match="needs a subject"):
        editor.edit(photo, "a red robot", small_config)


def test_cli_with_a_mask_file_writes_mask_overlay_and_provenance(
    tiny_model_dir: Path, tmp_path: Path, photo: Image.Image
) -> None:
    image = tmp_path / "astro.png"
    photo.resize((64, 64)).save(image)
    mask = tmp_path / "subject.png"
    Image.fromarray((_left_half_mask(128, 128) * 255).astype(np.uint8)).save(mask)
    out = tmp_path / "out"
    argv = [
        "edit",
        str(image),
        "--prompt",
        "a red robot",
        "--out",
        str(out),
        "--mask",
        str(mask),
        "--background",
        "dim",
        "--restore",
        "masked",
        "--model",
        str(tiny_model_dir),
        "--size",
        "32",
        "--steps",
        "4",
        "--inversion-steps",
        "4",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    record = json.loads((out / "astro.json").read_text())
    assert record["subject_mask"]["method"] == "file"
    assert record["config"]["weaken"] == {
        "background": "dim",
        "dim_factor": 0.5,
        "restore": "masked",
    }
    written = np.asarray(Image.open(out / "astro_mask.png"))
    assert written.shape == (32, 32)
    assert written[:, :12].min() >= 250 and written[:, 20:].max() <= 5  # resized like the image
    assert (out / "astro_mask_overlay.png").exists()


def test_cli_rejects_points_outside_the_image(tiny_model_dir, tmp_path, photo, capsys) -> None:
    image = tmp_path / "astro.png"
    photo.resize((64, 64)).save(image)
    argv = [
        "edit",
        str(image),
        "--prompt",
        "x",
        "--out",
        str(tmp_path / "o"),
        "--point",
        "500,10",
        "--model",
        str(tiny_model_dir),
        "--size",
        "32",
        "--device",
        "cpu",
    ]
    assert main(argv) == 2
    assert "500" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
