"""Re-edits: inversion steps that follow the sampling steps, source-feature reuse, disk cache."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from pnpsam.api import PnPEditor
from pnpsam.cli import main
from pnpsam.config import EditConfig, InversionConfig, PreprocessConfig, apply_preset
from pnpsam.core.callbacks import InjectionRecorder
from pnpsam.core.features import SourceFeatures, source_feature_bytes
from pnpsam.core.injection import find_injection_sites
from pnpsam.store import CacheWarning, InversionCache, InversionKey, InversionStore


@pytest.mark.parametrize("steps", [20, 30])
def test_inversion_steps_follow_the_sampling_steps(
    tiny_model_dir: Path, photo: Image.Image, tmp_path: Path, steps: int
) -> None:
    image = tmp_path / "photo.png"
    photo.resize((16, 16)).save(image)
    out = tmp_path / "out"
    args = ["edit", str(image), "--prompt", "a red robot", "--out", str(out), "--quiet"]
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--size", "16"]
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


# -- the on-disk inversion cache ----------------------------------------------------------


@pytest.fixture()
def disk_editor(editor: PnPEditor, tmp_path: Path, monkeypatch) -> PnPEditor:
    """The session editor with a fresh disk cache and no in-memory store (restored after)."""
    monkeypatch.setattr(editor, "cache", InversionCache(tmp_path / "cache"))
    monkeypatch.setattr(editor, "store", InversionStore(max_items=0))
    return editor


def _tiny_config(editor: PnPEditor) -> EditConfig:
    cfg = editor.default_config()
    cfg.preprocess.size = 16
    cfg.pnp.steps = 10
    return cfg


def test_cli_cached_reedit_costs_at_most_140_rows(
    tiny_model_dir: Path, photo: Image.Image, tmp_path: Path
) -> None:
    image = tmp_path / "photo.png"
    photo.resize((16, 16)).save(image)
    common = ["--model", str(tiny_model_dir), "--device", "cpu", "--size", "16", "--quiet"]
    common += ["--cache", str(tmp_path / "cache")]
    records = []
    for run, prompt in enumerate(["a red robot", "a blue dog"]):
        out = tmp_path / f"out{run}"
        assert main(["edit", str(image), "--prompt", prompt, "--out", str(out), *common]) == 0
        records.append(json.loads((out / "photo.json").read_text()))
    first, second = records
    assert first["unet_evaluations"] == 50 + 40 + 100 and not first["inversion_cached"]
    assert second["unet_evaluations"] == 40 + 100 <= 140 and second["inversion_cached"]
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one entry, no temporaries


def _corrupt(path: Path, how: str, cache: InversionCache, key: InversionKey) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif how == "flipped byte":
        path.write_bytes(data[:-9] + bytes([data[-9] ^ 0xFF]) + data[-8:])
    else:
        found = cache.get(key, FOUND_SHAPE[0], torch.float32)
        assert found is not None
        if how == "other key":
            other = dataclasses.replace(key, image_sha256="0" * 64)
            cache.put(other, found.clean, found.by_timestep, found.inversion_steps)
            os.replace(cache.path(other), path)
        elif how == "dtype":
            halves = {t: x.half() for t, x in found.by_timestep.items()}
            cache.put(key, found.clean.half(), halves, found.inversion_steps)
        elif how == "shape":
            crops = {t: x[..., :4] for t, x in found.by_timestep.items()}
            cache.put(key, found.clean[..., :4], crops, found.inversion_steps)


FOUND_SHAPE: list[tuple[int, ...]] = []
BAD_ENTRIES = ["truncated", "garbage", "flipped byte", "other key", "dtype", "shape"]


def test_bad_cache_entries_are_warned_recomputed_and_replaced(
    disk_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(disk_editor)
    cache = disk_editor.cache
    assert cache is not None
    fresh = disk_editor.invert(photo, cfg)
    assert fresh.unet_evaluations == 10 and not fresh.cached and fresh.key is not None
    path = cache.path(fresh.key)
    header = json.loads(safe_open(str(path), "pt").metadata()["pnpsam"])
    assert header["key"] == json.loads(json.dumps(fresh.key.describe()))
    FOUND_SHAPE[:] = [tuple(fresh.latents.clean.shape)]
    for how in BAD_ENTRIES:
        _corrupt(path, how, cache, fresh.key)
        with pytest.warns(CacheWarning, match="recomputing and replacing"):
            again = disk_editor.invert(photo, cfg)
        assert again.unet_evaluations == 10 and not again.cached, how
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = disk_editor.invert(photo, cfg)  # replaced: a valid entry again
        assert loaded.cached and loaded.unet_evaluations == 0, how
        for t, x in fresh.latents.by_timestep.items():
            assert torch.equal(loaded.latents.at(t), x), how
    assert cache.rejected == len(BAD_ENTRIES)


def test_cached_and_fresh_inversions_edit_identically(
    disk_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(disk_editor)
    fresh = disk_editor.edit(photo, "a red robot", cfg)
    cached = disk_editor.edit(photo, "a red robot", cfg)
    assert not fresh.inversion_cached and cached.inversion_cached
    assert cached.unet_evaluations == fresh.unet_evaluations - 10
    assert fresh.latents is not None and cached.latents is not None
    assert torch.equal(fresh.latents, cached.latents)


def _write_repeatedly(folder: Path, value: float) -> None:
    """One writer process: put the same key 20 times with its own tensors."""
    cache = InversionCache(folder)
    for _ in range(20):
        x = torch.full((1, 4, 64, 64), value)
        cache.put(_writers_key(), x, {21: x + 1, 1: x + 2}, 10)


def _writers_key() -> InversionKey:
    return InversionKey.of("ab" * 32, PreprocessConfig(), InversionConfig(), {"id": "m"}, [21, 1])


def test_two_processes_writing_one_key_leave_one_valid_entry(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    fork = multiprocessing.get_context("fork")  # the parent's imports: no second torch start
    writers = [fork.Process(target=_write_repeatedly, args=(folder, v)) for v in (1.0, 2.0)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [w.exitcode for w in writers] == [0, 0]
    key = _writers_key()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = InversionCache(folder).get(key, (1, 4, 64, 64), torch.float32)
    assert found is not None and found.inversion_steps == 10
    value = float(found.clean[0, 0, 0, 0])
    assert value in (1.0, 2.0) and torch.equal(found.by_timestep[1], found.clean + 2)
    assert [p.name for p in folder.iterdir()] == [f"{key.digest}.safetensors"]


# -- source-feature reuse -----------------------------------------------------------------


@pytest.fixture()
def reuse_editor(editor: PnPEditor, monkeypatch) -> PnPEditor:
    """The session editor keeping source features (fresh stores, restored after)."""
    monkeypatch.setattr(editor, "store", InversionStore())
    monkeypatch.setattr(editor, "source_features", InversionStore(max_bytes=2**30))
    return editor


def test_reedit_with_kept_features_costs_two_rows_per_step_and_prompt(
    reuse_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(reuse_editor)
    cfg.pnp.steps = 50
    first = reuse_editor.edit(photo, "a red robot", cfg)
    assert first.unet_evaluations == 50 + 40 + 100 == 190
    again = reuse_editor.edit(photo, "a red robot", cfg)
    assert again.unet_evaluations == 100 and again.inversion_reused
    # equal up to the float rounding of a 2-row batch instead of a 3-row one (CPU kernels)
    assert first.latents is not None and again.latents is not None
    torch.testing.assert_close(again.latents, first.latents, rtol=0, atol=1e-3)
    diff = np.abs(np.asarray(again.images[0], int) - np.asarray(first.images[0], int))
    assert diff.max() <= 1
    four = reuse_editor.edit(photo, ["a", "b", "c", "d"], cfg)
    assert four.unet_evaluations == 4 * 100


def test_replayed_features_are_the_source_rows_bit_for_bit(
    reuse_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(reuse_editor)
    inversion = reuse_editor.invert(photo, cfg)
    pipe = reuse_editor.pipeline
    recorder = InjectionRecorder()
    pipe.edit(inversion.latents, ["a red robot"], cfg.pnp, callback=recorder)
    plain = recorder.events
    kept = SourceFeatures()
    pipe.edit(inversion.latents, ["a blue dog"], cfg.pnp, features=kept)
    assert len(kept.tensors) == len(plain) == 8 + 5 * 8 * 2  # residual 8 steps, Q/K 5 x 8 blocks
    sites = find_injection_sites(pipe.unet, cfg.pnp.residual_blocks, cfg.pnp.attention_blocks)
    latent_hw = tuple(inversion.latents.clean.shape[-2:])
    assert kept.nbytes == source_feature_bytes(pipe.unet, sites, latent_hw, 8, 5, 4)  # README's
    for event in plain:  # the source row of an ordinary batch, recorded exactly
        assert torch.equal(
            kept.get(event.step.timestep, event.kind, event.block), event.features[:1]
        )
    replaying = InjectionRecorder()
    with pipe.count_unet_rows() as rows:
        pipe.edit(inversion.latents, ["a", "b"], cfg.pnp, callback=replaying, features=kept)
    replayed = replaying.events
    assert rows.rows == 2 * 2 * 10 and len(replayed) == len(plain)
    for event in replayed:  # guided rows only, each given the recorded source features
        source = kept.get(event.step.timestep, event.kind, event.block)
        assert event.features.shape[0] == 4 and torch.equal(
            event.features, source.expand(4, *source.shape[1:])
        )


def test_chunks_replay_what_the_first_chunk_recorded(
    reuse_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(reuse_editor)
    cfg.preprocess.size = 32  # at 16 px batch-size rounding grows to 1e-2 in this tiny UNet
    prompts = ["a red robot", "a blue dog", "a photo of snow"]
    reuse_editor.source_features.max_bytes = 0  # off: every chunk runs the source row
    whole = reuse_editor.edit(photo, prompts, cfg)
    reuse_editor.source_features.max_bytes = 2**30
    chunked = reuse_editor.edit(photo, prompts, cfg, prompt_batch_size=2)
    assert chunked.unet_evaluations == 8 + 2 * 3 * 10  # one source stream, not two
    assert whole.latents is not None and chunked.latents is not None
    torch.testing.assert_close(chunked.latents, whole.latents, rtol=0, atol=1e-4)


def test_features_over_the_budget_are_not_kept(reuse_editor: PnPEditor, photo) -> None:
    cfg = _tiny_config(reuse_editor)
    reuse_editor.source_features.max_bytes = 1000
    first = reuse_editor.edit(photo, "a red robot", cfg)
    again = reuse_editor.edit(photo, "a red robot", cfg)
    assert again.unet_evaluations == first.unet_evaluations - 10 == 8 + 20
    assert len(reuse_editor.source_features) == 0


def test_composed_attention_runs_the_source_row_instead_of_replaying(
    reuse_editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = _tiny_config(reuse_editor)
    cfg.pnp.steps = 4
    cfg.pnp.background_attention = "source"
    mask = np.zeros((photo.height, photo.width), np.float32)
    mask[100:300, 150:350] = 1.0
    first = reuse_editor.edit(photo, "a red robot", cfg, mask=mask)
    again = reuse_editor.edit(photo, "a red robot", cfg, mask=mask)
    assert again.unet_evaluations == first.unet_evaluations - 4 == 3 + 2 * 4
