"""Background preservation (PIE-Bench): PSNR, SSIM and MSE between images outside a mask.

PIE-Bench's ``*_unedit_part`` metrics multiply **both** images by ``1 - edit_mask`` (black
inside the edited region) and then compute each metric over the **whole** image, so the
blacked-out pixels count as perfectly preserved; we do the same, with images in [0, 1]:

* PSNR: ``10 log10(1 / MSE)`` with ``data_range=1.0`` (``skimage.metrics.peak_signal_noise_ratio``);
  ``inf`` for identical images.
* SSIM: ``skimage.metrics.structural_similarity`` with ``data_range=1.0``, an 11-tap Gaussian
  window of sigma 1.5 and population covariances (Wang et al. 2004), averaged over the channels
  and over the image less a 5-pixel border. Checked here against torchmetrics 1.9's SSIM map:
  equal to 1e-7 when that map is cropped the same way, which is what torchmetrics did before
  1.5 (PIE-Bench's time); torchmetrics >= 1.5 averages the reflect-padded full map instead
  (about 0.01 higher on dissimilar photos).
* MSE: mean squared difference over all pixels and channels.

PIE-Bench reports MSE x 10^4 and SSIM x 10^2; these functions return raw values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from pnpsam.imageio import PixelInput, to_float_array
from pnpsam.metrics.image_inputs import MaskInput, to_mask_array

SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. 2004; truncated at 3.5 sigma -> 11 taps


def outside_region(image: PixelInput, region: MaskInput | None) -> np.ndarray:
    """``HxWx3`` float32 in [0, 1] times ``1 - region`` (``region`` ``HxW``, 1 = edited)."""
    array = to_float_array(image)
    if region is None:
        return array
    return array * (1.0 - to_mask_array(region, array.shape[:2]))[..., None]


def _pair(source: PixelInput, output: PixelInput, edit_region: MaskInput | None):
    src, out = outside_region(source, edit_region), outside_region(output, edit_region)
    if src.shape != out.shape:
        raise ValueError(f"source shape {src.shape} and output shape {out.shape} differ")
    return src, out


def mse(source: PixelInput, output: PixelInput, edit_region: MaskInput | None = None) -> float:
    """Mean squared error over all pixels and channels, outside ``edit_region``."""
    src, out = _pair(source, output, edit_region)
    return float(mean_squared_error(src, out))


def psnr(source: PixelInput, output: PixelInput, edit_region: MaskInput | None = None) -> float:
    """PSNR in dB (``data_range=1``) outside ``edit_region``; ``inf`` when identical there."""
    src, out = _pair(source, output, edit_region)
    if np.array_equal(src, out):
        return float("inf")
    return float(peak_signal_noise_ratio(src, out, data_range=1.0))


def ssim(source: PixelInput, output: PixelInput, edit_region: MaskInput | None = None) -> float:
    """SSIM in [-1, 1] (``data_range=1``, Gaussian sigma 1.5) outside ``edit_region``."""
    src, out = _pair(source, output, edit_region)
    return float(
        structural_similarity(
            src,
            out,
            data_range=1.0,
            channel_axis=-1,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
        )
    )


def background_preservation(
    sources: Sequence[PixelInput],
    outputs: Sequence[PixelInput],
    edit_regions: Sequence[MaskInput | None],
) -> dict[str, list[float]]:
    """PSNR, SSIM and MSE per pair outside each pair's edit region (``None`` = whole image)."""
    if not len(sources) == len(outputs) == len(edit_regions):
        raise ValueError(
            f"got {len(sources)} sources, {len(outputs)} outputs, {len(edit_regions)} regions"
        )
    triples = list(zip(sources, outputs, edit_regions, strict=True))
    return {
        "psnr": [psnr(*t) for t in triples],
        "ssim": [ssim(*t) for t in triples],
        "mse": [mse(*t) for t in triples],
    }
