"""Structure distance (Splice / PnP / PIE-Bench): DINO ViT keys' self-similarity, compared by MSE.

Definition (Splice's ``get_keys_self_sim_from_input`` at the last layer, as used by PnP and
PIE-Bench): run DINO ViT-B/8 on the image, take the **keys** of the last block's self-attention
(all heads concatenated, i.e. the key projection's output), build the cosine self-similarity
matrix over the tokens, and report the MSE between the source's and the output's matrices.

Choices, stated so numbers can be compared:

* Tokens: the CLS token **and** all patch tokens, as Splice/PIE-Bench do (their ``patch_num`` is
  ``1 + h*w`` and nothing is dropped). ``include_cls=False`` drops it.
* Input: RGB in [0, 1] (uint8 / 255) — PIE-Bench's ``calculate_structure_distance`` feeds 0-255
  floats without dividing by 255 (a bug); we do divide. Then a torchvision-``Resize(224,
  max_size=480)``-style resize (shorter side to 224, longer side capped at 480, bilinear; no
  antialiasing, as torchvision's tensor ``Resize`` did when Splice and PIE-Bench were written),
  the bottom/right remainder below one patch cropped (the patch convolution drops it anyway),
  then ImageNet normalisation with the mean/std read from the model's image-processor config.
* Region variants (subject / background split): pixels outside the region are set to 0 before
  everything else (PIE-Bench's ``*_edit_part`` convention, so the score depends on nothing
  outside the region), and only the tokens whose patch lies at least ``min_patch_coverage``
  inside the region enter the matrices (so the blacked-out area's self-similarity, identical in
  both images, does not dilute the MSE). ``region_tokens_only=False`` gives exactly PIE-Bench's
  ``structure_distance_edit_part``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, ViTModel

from pnpsam.imageio import PixelInput, to_float_array
from pnpsam.metrics.config import StructureDistanceConfig
from pnpsam.metrics.image_inputs import MaskInput, check_pairs, move_to, to_mask_array

# Submodule paths of the last block's key projection, newest transformers layout first.
_KEY_PROJECTION_PATHS = (
    ("layers", "attention.k_proj"),  # transformers >= 5
    ("encoder.layer", "attention.attention.key"),  # transformers 4.x
)


def cosine_self_similarity(tokens: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``BxTxD`` features -> ``BxTxT`` cosine similarities (norm products clamped at ``eps``)."""
    norms = tokens.norm(dim=-1, keepdim=True)
    return (tokens @ tokens.transpose(1, 2)) / torch.clamp(norms @ norms.transpose(1, 2), min=eps)


def _resized_size(height: int, width: int, resize: int, max_size: int) -> tuple[int, int]:
    """torchvision ``Resize(resize, max_size)`` output size for an int ``resize``."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = resize, int(resize * long / short)
    if new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if height <= width else (new_long, new_short)


class DinoStructureDistance:
    """Loads a DINO ViT once and scores many (source, output) pairs; CPU or GPU, batched."""

    def __init__(
        self,
        model: ViTModel,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        config: StructureDistanceConfig | None = None,
    ) -> None:
        self.config = config or StructureDistanceConfig()
        self.model = model.eval()
        patch = model.config.patch_size  # an int, or (h, w) in some configs
        self.patch_size = patch if isinstance(patch, int) else int(patch[0])
        self._key_projection = self._find_key_projection(model)
        param = next(model.parameters())
        self._mean = torch.tensor(image_mean, dtype=param.dtype, device=param.device)
        self._std = torch.tensor(image_std, dtype=param.dtype, device=param.device)

    @classmethod
    def from_pretrained(
        cls,
        config: StructureDistanceConfig | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        local_files_only: bool = False,
    ) -> DinoStructureDistance:
        """Load ``config.model_id`` (hub id or folder) with its image-processor config."""
        config = config or StructureDistanceConfig()
        model = ViTModel.from_pretrained(
            config.model_id, add_pooling_layer=False, dtype=dtype, local_files_only=local_files_only
        )
        processor = AutoImageProcessor.from_pretrained(
            config.model_id, local_files_only=local_files_only
        )
        move_to(model, device)
        return cls(model, processor.image_mean, processor.image_std, config)

    @staticmethod
    def _find_key_projection(model: torch.nn.Module) -> torch.nn.Module:
        for blocks_path, key_path in _KEY_PROJECTION_PATHS:
            try:
                blocks = model.get_submodule(blocks_path)
            except AttributeError:
                continue
            return blocks[-1].get_submodule(key_path)  # type: ignore[index]
        raise ValueError(
            f"cannot find the last block's key projection in {type(model).__name__}; "
            f"known layouts: {_KEY_PROJECTION_PATHS}"
        )

    @property
    def device(self) -> torch.device:
        return self._mean.device

    def preprocess(self, image: PixelInput, region: MaskInput | None = None) -> torch.Tensor:
        """One image -> ``3xhxw`` normalised tensor (region applied as black outside)."""
        array = to_float_array(image)
        if region is not None:
            array = array * to_mask_array(region, array.shape[:2])[..., None]
        pixels = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]
        pixels = self._resize(pixels.to(self.device, self._mean.dtype), "bilinear")
        return ((pixels[0] - self._mean[:, None, None]) / self._std[:, None, None]).contiguous()

    def _resize(self, batch: torch.Tensor, mode: str) -> torch.Tensor:
        """``Bx?xHxW`` -> resized per the config, then cropped to whole patches."""
        cfg = self.config
        height, width = _resized_size(batch.shape[-2], batch.shape[-1], cfg.resize, cfg.max_size)
        if (height, width) != tuple(batch.shape[-2:]):
            kwargs = {"align_corners": False, "antialias": cfg.antialias}
            if mode == "area":
                kwargs = {}
            batch = F.interpolate(batch, size=(height, width), mode=mode, **kwargs)
        p = self.patch_size
        return batch[..., : height // p * p, : width // p * p]

    def token_weights(self, region: MaskInput, image_shape: tuple[int, int]) -> torch.Tensor:
        """Region -> ``T`` bool: which tokens (CLS first if kept) the region variant compares."""
        mask = torch.from_numpy(to_mask_array(region, image_shape))[None, None]
        mask = self._resize(mask.to(self.device, torch.float32), "area")
        coverage = F.avg_pool2d(mask, self.patch_size).flatten()
        keep = coverage >= self.config.min_patch_coverage
        if self.config.include_cls:
            keep = torch.cat([torch.ones(1, dtype=torch.bool, device=keep.device), keep])
        return keep

    @torch.no_grad()
    def key_self_similarity(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``Bx3xhxw`` normalised pixels -> ``BxTxT`` last-block key self-similarity."""
        captured: list[torch.Tensor] = []
        handle = self._key_projection.register_forward_hook(
            lambda _module, _inputs, output: captured.append(output)
        )
        try:
            self.model(pixel_values=pixel_values, interpolate_pos_encoding=True)
        finally:
            handle.remove()
        keys = captured[-1].float()  # BxTx(heads*head_dim): heads already concatenated
        if not self.config.include_cls:
            keys = keys[:, 1:]
        return cosine_self_similarity(keys)

    def __call__(
        self,
        sources: Sequence[PixelInput],
        outputs: Sequence[PixelInput],
        regions: Sequence[MaskInput | None] | None = None,
    ) -> torch.Tensor:
        """Structure distance per pair, ``B`` float32 on CPU (NaN where a region is empty).

        ``regions[i]`` (``HxW``, 1 = inside, same size as both images of pair ``i``) restricts
        pair ``i`` to a region; ``None`` compares whole images. Each pair's two images must have
        the same size; pairs of equal size share one forward pass.
        """
        check_pairs(sources, outputs)
        region_list = list(regions) if regions is not None else [None] * len(sources)
        if len(region_list) != len(sources):
            raise ValueError(f"got {len(region_list)} regions for {len(sources)} image pairs")
        prepared = []
        for index, (source, output, region) in enumerate(
            zip(sources, outputs, region_list, strict=True)
        ):
            src, out = self.preprocess(source, region), self.preprocess(output, region)
            if src.shape != out.shape:
                raise ValueError(
                    f"pair {index}: source size {tuple(src.shape[1:])} and output size "
                    f"{tuple(out.shape[1:])} differ after resizing; give same-size images"
                )
            keep = None
            if region is not None and self.config.region_tokens_only:
                keep = self.token_weights(region, to_float_array(source).shape[:2])
            prepared.append((src, out, keep))
        distances = torch.full((len(prepared),), math.nan)
        # Group pairs by processed size so each group is one forward pass of 2*B images.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, (src, _out, _keep) in enumerate(prepared):
            by_shape.setdefault(tuple(src.shape), []).append(index)
        for indices in by_shape.values():
            batch = torch.stack(
                [prepared[i][0] for i in indices] + [prepared[i][1] for i in indices]
            )
            sims = self.key_self_similarity(batch)
            for row, index in enumerate(indices):
                src_sim, out_sim = sims[row], sims[row + len(indices)]
                keep = prepared[index][2]
                if keep is not None:
                    if not bool(keep[int(self.config.include_cls) :].any()):
                        continue  # empty region: NaN, as PIE-Bench reports "nan"
                    src_sim, out_sim = src_sim[keep][:, keep], out_sim[keep][:, keep]
                distances[index] = F.mse_loss(out_sim, src_sim).cpu()
        return distances
