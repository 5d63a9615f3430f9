"""LPIPS-style perceptual distance, in two clearly named flavours.

* ``backend="lpips"`` — the real LPIPS (Zhang et al. 2018, v0.1) from the ``lpips`` package,
  ``net="squeeze"`` by default: the network PIE-Bench reports (through torchmetrics, inputs in
  [-1, 1]). Its learned per-channel weights ship in the package; its SqueezeNet/AlexNet/VGG
  backbone comes from torchvision. Reported under the name ``"lpips"``.
* ``backend="transformers"`` — LPIPS's distance formula *without* its learned weights (the
  package's ``lpips=False`` baseline): unit-normalise each layer's features over channels,
  square the difference, sum over channels, average over space, sum over layers, on the
  hidden states of a transformers CNN (``backbone_id``, default ``microsoft/resnet-18``;
  inputs in [0, 1] normalised with the backbone's image-processor mean/std). It is **not** the
  paper's number and is reported under the name ``"lpips_unweighted"`` to keep them apart.

``backend="auto"`` takes the real LPIPS when the ``lpips`` package (and torchvision) import, and
otherwise the unweighted one, with a warning. Regions follow PIE-Bench: both images are
multiplied by ``1 - edit_region`` and compared whole, at their own resolution.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModel

from pnpsam.imageio import PixelInput
from pnpsam.metrics.background import outside_region
from pnpsam.metrics.config import LpipsConfig
from pnpsam.metrics.image_inputs import MaskInput, check_pairs, move_to

LPIPS_NAME = "lpips"
UNWEIGHTED_NAME = "lpips_unweighted"


def unweighted_lpips(
    source_features: Sequence[torch.Tensor],
    output_features: Sequence[torch.Tensor],
    eps: float = 1e-10,
) -> torch.Tensor:
    """LPIPS's baseline formula over lists of ``BxCxhxw`` layer features -> ``B`` distances."""
    total = torch.zeros(source_features[0].shape[0], device=source_features[0].device)
    for src, out in zip(source_features, output_features, strict=True):
        src_n = src / (src.norm(dim=1, keepdim=True) + eps)
        out_n = out / (out.norm(dim=1, keepdim=True) + eps)
        total = total + ((src_n - out_n) ** 2).sum(dim=1).mean(dim=(1, 2))
    return total


def _import_lpips():
    try:
        import lpips
    except Exception as error:  # torchvision mismatches raise RuntimeError at import
        raise ImportError(
            "the real LPIPS needs the 'lpips' package and a working torchvision "
            f"(import failed: {error}); install both, or use LpipsConfig(backend='transformers') "
            "for the unweighted LPIPS formula on a transformers CNN"
        ) from error
    return lpips


class PerceptualDistance:
    """Loads the LPIPS network once and scores many pairs; CPU or GPU, batched.

    ``name`` says which flavour it is: ``"lpips"`` (the paper's) or ``"lpips_unweighted"``.
    """

    def __init__(
        self,
        network: torch.nn.Module,
        name: str,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        config: LpipsConfig | None = None,
    ) -> None:
        self.config = config or LpipsConfig()
        self.network = network.eval()
        self.name = name
        device = next(network.parameters()).device
        self._mean = torch.tensor(image_mean or [0.0, 0.0, 0.0], device=device)
        self._std = torch.tensor(image_std or [1.0, 1.0, 1.0], device=device)

    @classmethod
    def from_pretrained(
        cls,
        config: LpipsConfig | None = None,
        device: str | torch.device = "cpu",
        local_files_only: bool = False,
    ) -> PerceptualDistance:
        """Build the configured flavour (transformers weights from ``config.backbone_id``)."""
        config = config or LpipsConfig()
        if config.backend not in ("auto", "lpips", "transformers"):
            raise ValueError(f"unknown LPIPS backend {config.backend!r}")
        if config.backend in ("auto", "lpips"):
            try:
                lpips = _import_lpips()
            except ImportError as error:
                if config.backend == "lpips":
                    raise
                warnings.warn(
                    f"{error}; falling back to '{UNWEIGHTED_NAME}' on {config.backbone_id}",
                    stacklevel=2,
                )
            else:
                network = lpips.LPIPS(net=config.net, verbose=False)
                move_to(network, device)
                return cls(network, LPIPS_NAME, config=config)
        backbone = AutoModel.from_pretrained(config.backbone_id, local_files_only=local_files_only)
        move_to(backbone, device)
        processor = AutoImageProcessor.from_pretrained(
            config.backbone_id, local_files_only=local_files_only
        )
        return cls(backbone, UNWEIGHTED_NAME, processor.image_mean, processor.image_std, config)

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def _layer_features(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.network(
            pixel_values=(pixels - self._mean[:, None, None]) / self._std[:, None, None],
            output_hidden_states=True,
        ).hidden_states
        if any(h.ndim != 4 for h in hidden):
            raise ValueError(
                f"{self.config.backbone_id}: hidden states must be BxCxhxw feature maps "
                "(a convolutional backbone such as ResNet or ConvNeXt)"
            )
        return [h.float() for h in hidden]

    @torch.no_grad()
    def distance_tensors(self, sources: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """``Bx3xHxW`` float tensors in [0, 1] -> ``B`` distances."""
        if self.name == LPIPS_NAME:
            return self.network(sources * 2 - 1, outputs * 2 - 1).flatten()
        features = self._layer_features(torch.cat([sources, outputs]))
        half = sources.shape[0]
        return unweighted_lpips([f[:half] for f in features], [f[half:] for f in features])

    def __call__(
        self,
        sources: Sequence[PixelInput],
        outputs: Sequence[PixelInput],
        edit_regions: Sequence[MaskInput | None] | None = None,
    ) -> torch.Tensor:
        """Distance per pair, ``B`` float32 on CPU; 0 = identical (outside the edit regions)."""
        check_pairs(sources, outputs)
        regions = list(edit_regions) if edit_regions is not None else [None] * len(sources)
        if len(regions) != len(sources):
            raise ValueError(f"got {len(regions)} regions for {len(sources)} image pairs")
        pairs = []
        for index, (source, output, region) in enumerate(
            zip(sources, outputs, regions, strict=True)
        ):
            src, out = outside_region(source, region), outside_region(output, region)
            if src.shape != out.shape:
                raise ValueError(f"pair {index}: source {src.shape} and output {out.shape} differ")
            pairs.append((src, out))
        distances = torch.empty(len(pairs))
        step = self.config.batch_size
        for start in range(0, len(pairs), step):
            chunk = list(range(start, min(start + step, len(pairs))))
            # Pairs of different sizes cannot share a batch; run those one by one.
            same_size = len({pairs[i][0].shape for i in chunk}) == 1
            groups = [chunk] if same_size else [[i] for i in chunk]
            for group in groups:
                src_t = self._to_tensor([pairs[i][0] for i in group])
                out_t = self._to_tensor([pairs[i][1] for i in group])
                distances[group] = self.distance_tensors(src_t, out_t).float().cpu()
        return distances

    def _to_tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        return stacked.to(self.device, next(self.network.parameters()).dtype)
