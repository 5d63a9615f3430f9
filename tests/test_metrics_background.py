"""PSNR / SSIM / MSE on hand-computed pairs, and LPIPS (unweighted, tiny ResNet)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from metrics_fixtures import photo, save_tiny_resnet

from pnpsam.metrics.background import background_preservation, mse, psnr, ssim
from pnpsam.metrics.lpips import (
    UNWEIGHTED_NAME,
    LpipsConfig,
    PerceptualDistance,
    unweighted_lpips,
)


def flat(value: float, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.float32)


def test_mse_and_psnr_on_a_known_pair():
    assert mse(flat(0.0), flat(0.5)) == pytest.approx(0.25)
    assert psnr(flat(0.0), flat(0.5)) == pytest.approx(10 * math.log10(1 / 0.25))
    assert psnr(flat(0.3), flat(0.3)) == math.inf


def test_ssim_on_known_pairs():
    # Constant images: SSIM reduces to the luminance term (2xy + C1) / (x^2 + y^2 + C1).
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1)
    assert ssim(flat(0.5), flat(0.25)) == pytest.approx(expected, rel=1e-5)
    image = photo(64)
    assert ssim(image, image) == pytest.approx(1.0)
    assert ssim(image, photo(64, "chelsea")) < 0.5


def test_uint8_inputs_are_scaled_to_unit_range():
    a, b = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 51, np.uint8)
    assert mse(a, b) == pytest.approx(0.2**2)


def test_background_metrics_only_see_outside_the_edit_region():
    source = flat(0.5)
    edit = np.zeros((32, 32), dtype=bool)
    edit[:, :16] = True  # left half edited
    output = source.copy()
    output[:, :16] = 0.0  # changes inside the edit region: invisible
    assert mse(source, output, edit) == 0.0
    assert psnr(source, output, edit) == math.inf
    assert ssim(source, output, edit) == pytest.approx(1.0)
    output[:16, 16:] += 0.2  # a quarter of the image, outside the region, off by 0.2
    assert mse(source, output, edit) == pytest.approx(0.25 * 0.2**2)
    assert psnr(source, output, edit) == pytest.approx(10 * math.log10(1 / (0.25 * 0.04)))
    rows = background_preservation([source], [output], [edit])
    assert rows["mse"][0] == pytest.approx(0.01)


def test_unweighted_lpips_formula_by_hand():
    src = [torch.tensor([3.0, 4.0]).reshape(1, 2, 1, 1)]
    out = [torch.tensor([4.0, 3.0]).reshape(1, 2, 1, 1)]
    # unit vectors (0.6, 0.8) and (0.8, 0.6): squared difference summed over channels = 0.08
    assert unweighted_lpips(src, out).item() == pytest.approx(0.08)
    two_layers = unweighted_lpips(src * 2, out * 2)
    assert two_layers.item() == pytest.approx(0.16)


@pytest.fixture(scope="module")
def perceptual(tmp_path_factory):
    folder = save_tiny_resnet(tmp_path_factory.mktemp("resnet"))
    config = LpipsConfig(backend="transformers", backbone_id=str(folder))
    return PerceptualDistance.from_pretrained(config, local_files_only=True)


def noisy(image: np.ndarray, sigma: float) -> np.ndarray:
    noise = np.random.default_rng(0).normal(0.0, 1.0, image.shape)
    return np.clip(image / 255.0 + sigma * noise, 0.0, 1.0).astype(np.float32)


def test_lpips_zero_for_identical_symmetric_and_grows_with_noise(perceptual):
    assert perceptual.name == UNWEIGHTED_NAME
    image = photo(64)
    other = noisy(image, 0.1)
    ab, ba, same = perceptual([image, other, image], [other, image, image]).tolist()
    assert same == 0.0
    assert ab == pytest.approx(ba, rel=1e-5)
    sigmas = [0.02, 0.05, 0.1, 0.2, 0.4]
    distances = perceptual([image] * len(sigmas), [noisy(image, s) for s in sigmas]).tolist()
    assert all(a < b for a, b in itertools.pairwise(distances)), distances


def test_lpips_ignores_the_edit_region(perceptual):
    image = photo(64)
    edit = np.zeros((64, 64), dtype=bool)
    edit[16:48, 16:48] = True
    changed = np.where(edit[..., None], photo(64, "chelsea"), image)
    assert perceptual([image], [changed], [edit]).item() == 0.0
    assert perceptual([image], [changed]).item() > 0.0


def test_real_lpips_without_the_package_says_how_to_get_it():
    try:
        import lpips  # noqa: F401
    except Exception:
        pass
    else:
        pytest.skip("the lpips package imports here")
    with pytest.raises(ImportError, match="backend='transformers'"):
        PerceptualDistance.from_pretrained(LpipsConfig(backend="lpips"))


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="'alex'"):
        PerceptualDistance.from_pretrained(LpipsConfig(backend="alex"))  # type: ignore[arg-type]
