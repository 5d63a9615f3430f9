"""Loading models and images: every supported form works, every bad one is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.config import ConfigError, EditConfig, ModelConfig, PreprocessConfig, apply_preset
from pnpsam.core.injection import InjectionSiteError, find_injection_sites
from pnpsam.imageio import ImageInputError, load_image, target_size
from pnpsam.models.loading import ModelLoadError, load_stable_diffusion


def test_local_folder_loads_with_ddim_scheduler(tiny_model_dir: Path) -> None:
    sd, device = load_stable_diffusion(ModelConfig(model=str(tiny_model_dir), device="cpu"))
    assert type(sd.scheduler).__name__ == "DDIMScheduler"
    assert sd.scheduler.config.steps_offset == 1 and not sd.scheduler.config.clip_sample
    assert device.type == "cpu" and sd.unet.dtype == torch.float32


def test_bf16_loads(tiny_model_dir: Path) -> None:
    sd, _ = load_stable_diffusion(
        ModelConfig(model=str(tiny_model_dir), device="cpu", dtype="bf16")
    )
    assert sd.unet.dtype == torch.bfloat16


def test_folder_without_parts_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "unet")
    with pytest.raises(ModelLoadError, match="missing unet/"):
        load_stable_diffusion(ModelConfig(model=str(broken), device="cpu"))


def test_pickled_checkpoint_needs_opt_in(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"not really")
    with pytest.raises(ModelLoadError, match="allow-pickle"):
        load_stable_diffusion(ModelConfig(model=str(ckpt), device="cpu"))


def test_corrupt_safetensors_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        load_stable_diffusion(ModelConfig(model=str(bad), device="cpu"))


@pytest.mark.parametrize(
    ("model", "device", "dtype", "message"),
    [
        ("no/such-model-anywhere", "cpu", "fp32", "no/such-model-anywhere"),
        ("./missing-folder", "cpu", "fp32", "missing-folder"),
        ("x", "tpu", "fp32", "device"),
        ("x", "cpu", "fp8", "dtype"),
    ],
)
def test_bad_model_settings_are_named(model, device, dtype, message, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises((ModelLoadError, ConfigError), match=message):
        load_stable_diffusion(ModelConfig(model=model, device=device, dtype=dtype))


def test_unavailable_cuda_is_named() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_stable_diffusion(ModelConfig(model="x", device="cuda"))


def test_architecture_without_sites_is_refused() -> None:
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    with pytest.raises(InjectionSiteError, match="does not exist"):
        find_injection_sites(unet, (4,), ())
    with pytest.raises(InjectionSiteError, match="no self-attention"):
        find_injection_sites(unet, (1,), (1,))


# -- images ------------------------------------------------------------------------------
def test_exif_orientation_alpha_and_grey(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    upright = load_image(tmp_path / "rotated.jpg")
    assert upright.size == (20, 40)
    assert np.asarray(upright)[:15].mean() > 200  # the white half is now on top

    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 0))
    rgba.save(tmp_path / "clear.png")
    assert load_image(tmp_path / "clear.png").getpixel((5, 5)) == (255, 255, 255)
    Image.new("L", (30, 30), 80).save(tmp_path / "grey.png")
    assert load_image(tmp_path / "grey.png").getpixel((1, 1)) == (80, 80, 80)


def test_bad_image_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="does not exist"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "notes.png").write_text("this is text")
    with pytest.raises(ImageInputError, match=r"notes\.png"):
        load_image(tmp_path / "notes.png")
    Image.new("RGB", (3000, 3000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageInputError, match="MP limit"):
        load_image(tmp_path / "huge.png", max_pixels=4_000_000)


def test_sizes_round_to_the_model_multiple() -> None:
    resize = PreprocessConfig(resize_mode="resize")
    assert target_size(451, 300, resize, 512, 64) == (768, 512)
    assert target_size(600, 400, resize, 512, 64) == (768, 512)
    crop = PreprocessConfig(resize_mode="center-crop")
    assert target_size(451, 300, crop, 512, 64) == (512, 512)
    with pytest.raises(ImageInputError, match="at least"):
        target_size(10, 300, resize, 512, 64)
    with pytest.raises(ImageInputError, match="aspect ratio"):
        target_size(3000, 100, resize, 512, 64)
    with pytest.raises(ImageInputError, match="multiple of 64"):
        target_size(300, 300, resize, 500, 64)


def test_presets_and_config_errors() -> None:
    port = apply_preset(EditConfig(), "pnp-diffusers")
    assert (port.inversion.steps, port.pnp.residual_steps, port.pnp.attention_steps) == (
        999,
        40,
        25,
    )
    assert apply_preset(EditConfig(), "paper").pnp.source == "reconstruction"
    with pytest.raises(ConfigError, match="unknown preset"):
        apply_preset(EditConfig(), "magic")
    with pytest.raises(ConfigError, match="colour"):
        EditConfig.from_dict({"pnp": {"colour": 1}})


def test_editor_refuses_bad_arrays(editor: PnPEditor) -> None:
    with pytest.raises(ValueError, match="uint8"):
        editor.edit(np.zeros((32, 32, 3), np.float32), "a red robot")
