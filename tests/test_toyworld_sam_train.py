"""The toy SAM's training pieces: batches say what the renders show, every part learns, and
the saved folder loads like any SAM checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pnpsam.masks import SamPointSegmenter
from pnpsam.toyworld.sam_train import (
    ToySamConfig,
    build_toy_sam,
    build_toy_sam_processor,
    make_batch,
    mask_losses,
    save_model,
    train_step,
)

TINY = ToySamConfig(vision_hidden=32, vision_layers=1, vision_heads=2, channels=32, decoder_heads=2)


def _at(mask: torch.Tensor, xy: torch.Tensor) -> bool:
    return bool(mask[int(xy[1]), int(xy[0])])


def test_batches_are_deterministic_and_prompts_match_their_targets() -> None:
    processor = build_toy_sam_processor(TINY)
    batch = make_batch(7, 4, processor, seed=3)
    again = make_batch(7, 4, processor, seed=3)
    assert torch.equal(batch.pixels, again.pixels) and torch.equal(batch.clicks, again.clicks)
    assert not torch.equal(batch.pixels, make_batch(8, 4, processor, seed=3).pixels)
    assert batch.pixels.shape == (4, 3, 64, 64) and batch.targets.shape == (4, 2, 64, 64)
    for b in range(4):
        for p in range(2):
            target = batch.targets[b, p]
            assert _at(target, batch.one_click[b, p, 0])
            for xy, label in zip(batch.clicks[b, p], batch.labels[b, p], strict=True):
                assert _at(target, xy) == bool(label)  # positives on it, negatives off it
            x0, y0, x1, y1 = batch.boxes[b, p].tolist()
            rows, cols = np.nonzero(batch.box_targets[b, p].numpy())
            # The box is the segment's, up to its noise (at most 2 px per side).
            assert abs(x0 - cols.min()) <= 2 and abs(x1 - cols.max() - 1) <= 2
            assert abs(y0 - rows.min()) <= 2 and abs(y1 - rows.max() - 1) <= 2
        # Each image asks for its subject first (the same colour everywhere in it).
        subject = batch.targets[b, 0].numpy()
        pixels = batch.pixels[b].permute(1, 2, 0).numpy()[subject]
        assert np.allclose(pixels, pixels[0], atol=1e-4)


def test_every_part_of_the_model_learns() -> None:
    torch.manual_seed(0)
    model = build_toy_sam(TINY).train()
    batch = make_batch(0, 2, build_toy_sam_processor(TINY))
    result = train_step(model, batch, torch.device("cpu"))
    assert torch.isfinite(result["loss"])
    result["loss"].backward()
    for part in ("vision_encoder", "prompt_encoder", "mask_decoder"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(part)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), part


def test_mask_loss_prefers_the_right_mask() -> None:
    target = torch.zeros(8, 8, dtype=torch.bool)
    target[2:6, 2:6] = True
    right = torch.where(target, 8.0, -8.0)
    losses = mask_losses(torch.stack([right, -right, torch.zeros(8, 8)]), target)
    assert losses[0] < 0.05 and losses[0] < losses[2] < losses[1]


def test_saved_folder_loads_as_a_sam_in_fp16(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_toy_sam(TINY).eval()
    out = tmp_path / "toy_sam"
    save_model(model, build_toy_sam_processor(TINY), out, {"steps": 0})
    save_model(model, build_toy_sam_processor(TINY), out, {"steps": 1})  # replaces it whole
    assert not out.with_name("toy_sam.tmp").exists() and not out.with_name("toy_sam.old").exists()
    segmenter = SamPointSegmenter.from_pretrained(str(out), local_files_only=True)
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    segmenter.set_image(image)
    loaded = segmenter.predict([(30, 30)], [1]).iou_scores
    direct = SamPointSegmenter(model.half().float(), build_toy_sam_processor(TINY))
    direct.set_image(image)
    assert np.allclose(loaded, direct.predict([(30, 30)], [1]).iou_scores, atol=1e-3)


def test_a_fresh_model_sees_the_image_and_where_a_click_is() -> None:
    """Two initialisations transformers makes for loading SAM's weights, not for training, are
    replaced: the image encoder's weights start at std 0.02 (transformers' 1e-10 left its
    attention and MLP layers doing nothing at the start) and the positional features have
    SAM's std 1, fixed (transformers' std hidden/2 turned a 1 px move into a new random code,
    so a click matched no grid cell)."""
    torch.manual_seed(0)
    model = build_toy_sam(TINY).eval()
    for name, weight in model.vision_encoder.named_parameters():
        if weight.dim() > 1 and name != "pos_embed":  # SAM starts its position table at 0
            assert 0.01 < float(weight.detach().std()) < 0.03, name
    features = model.shared_image_embedding.positional_embedding
    assert not features.requires_grad and 0.5 < float(features.std()) < 1.5

    def code(xy: tuple[float, float]) -> torch.Tensor:
        """The positional code of a point given in [0, 1] image coordinates."""
        return model.shared_image_embedding(torch.tensor([[[xy]]]))[0, 0, 0]

    def similarity(a: tuple[float, float], b: tuple[float, float]) -> float:
        return float(torch.cosine_similarity(code(a), code(b), dim=0))

    cell = 1 / TINY.grid
    for gx, gy in ((3, 4), (8, 8), (12, 2)):
        centre = ((gx + 0.5) * cell, (gy + 0.5) * cell)
        click = (centre[0] + 1 / 64, centre[1] - 1 / 64)  # one pixel off the cell's centre
        far = (centre[0] + 4 * cell, centre[1])
        assert similarity(click, centre) > 0.9
        assert similarity(click, centre) > similarity(click, far) + 0.3


def test_more_segments_per_image_are_distinct_and_half_the_others_are_the_background() -> None:
    processor = build_toy_sam_processor(TINY)
    batch = make_batch(11, 6, processor, segments_per_image=3)
    assert batch.targets.shape == (6, 3, 64, 64) and batch.one_click.shape == (6, 3, 1, 2)
    for image in batch.targets:
        flat = {bytes(np.packbits(t.numpy())) for t in image}
        assert len(flat) == 3  # subject and two other segments, no repeats
    firsts = [make_batch(s, 8, processor).targets[:, 1] for s in range(6)]
    background = [float(t.float().mean()) > 0.4 for batch_ in firsts for t in batch_]
    assert 0.3 < np.mean(background) < 0.7  # the background about as often as a stone
