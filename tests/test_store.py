"""The inversion store: keys cover what an inversion depends on; bounds evict least recent."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from pnpsam.api import PnPEditor, unet_evaluations
from pnpsam.config import ConfigError, EditConfig, InversionConfig, PreprocessConfig
from pnpsam.store import InversionKey, InversionStore, tensor_bytes

MODEL = {"id": "m", "revision": None, "resolved_path": "/m", "commit": None, "dtype": "float32"}


def _key(**changes) -> InversionKey:
    parts = {
        "image_sha256": "ab" * 32,
        "preprocess": PreprocessConfig(size=64),
        "inversion": InversionConfig(steps=10),
        "model": MODEL,
        "timesteps": [901, 801],
    }
    parts.update(changes)
    return InversionKey.of(**parts)


def test_key_digest_is_stable_and_covers_every_dependency() -> None:
    base = _key()
    assert base.digest == _key().digest and len(base.digest) == 64
    json.dumps(base.describe())  # a cache header can state it
    variants = [
        _key(image_sha256="cd" * 32),
        _key(preprocess=PreprocessConfig(size=64, resample="bilinear")),
        _key(inversion=InversionConfig(steps=20)),
        _key(inversion=InversionConfig(steps=10, prompt="a photo")),
        _key(model={**MODEL, "dtype": "float16"}),
        _key(model={**MODEL, "revision": "fp16"}),
        _key(model={**MODEL, "resolved_path": "/other"}),
        _key(timesteps=[901, 701]),
    ]
    digests = {v.digest for v in variants}
    assert base.digest not in digests and len(digests) == len(variants)


def test_store_evicts_least_recently_used_by_count_and_bytes() -> None:
    one_kib = torch.zeros(256)  # 1024 bytes of float32
    assert tensor_bytes({"a": [one_kib, one_kib]}) == 2048
    store: InversionStore[torch.Tensor] = InversionStore(max_items=2, max_bytes=10_000)
    a, b, c = (_key(image_sha256=str(i) * 64) for i in range(3))
    store.put(a, one_kib)
    store.put(b, one_kib)
    assert store.get(a) is one_kib  # a is now the most recent
    store.put(c, one_kib)
    assert a in store and c in store and b not in store and len(store) == 2
    assert store.get(b) is None and (store.hits, store.misses) == (1, 1)

    by_bytes: InversionStore[torch.Tensor] = InversionStore(max_items=10, max_bytes=2500)
    for key in (a, b, c):
        by_bytes.put(key, one_kib)
    assert len(by_bytes) == 2 and a not in by_bytes and by_bytes.nbytes == 2048
    by_bytes.put(a, torch.zeros(1000))  # larger than the whole budget: not kept
    assert a not in by_bytes and len(by_bytes) == 2

    off: InversionStore[torch.Tensor] = InversionStore(max_items=0)
    off.put(a, one_kib)
    assert len(off) == 0
    with pytest.raises(ConfigError, match="max_items=-1"):
        InversionStore(max_items=-1)


def test_second_edit_reuses_the_stored_inversion_and_counts_rows(
    editor: PnPEditor, small_config: EditConfig, photo
) -> None:
    editor.store.clear()
    first = editor.edit(photo, ["a red robot", "a blue dog"], small_config)
    inversion_rows = 10  # 10-step inversion, one row per call
    source_rows = 8  # the source row runs while residual injection lasts (0.8 x 10)
    assert not first.inversion_reused
    assert first.unet_evaluations == inversion_rows + source_rows + 2 * 2 * 10
    assert first.unet_evaluations == unet_evaluations(small_config.pnp, inversion_rows, 2)
    second = editor.edit(photo, "a photo of snow", small_config)
    assert second.inversion_reused and second.timings["inversion_s"] == 0.0
    assert second.unet_evaluations == source_rows + 2 * 10
    # another inversion prompt is another inversion
    other = EditConfig.from_dict(small_config.to_dict())
    other.inversion.prompt = "a photo"
    assert not editor.edit(photo, "a photo of snow", other).inversion_reused
    assert len(editor.store) == 2


def test_a_disabled_store_inverts_every_time(tiny_model_dir, small_config, photo) -> None:
    plain = PnPEditor.from_pretrained(str(tiny_model_dir), device="cpu")
    plain.set_progress_bar_config(disable=True)
    plain.store = InversionStore(max_items=0)
    a = plain.edit(photo, "a red robot", small_config)
    b = plain.edit(photo, "a red robot", small_config)
    assert not a.inversion_reused and not b.inversion_reused
    assert a.unet_evaluations == b.unet_evaluations == 10 + 8 + 20
    assert torch.equal(a.latents, b.latents)


def test_record_states_the_run(editor: PnPEditor, small_config: EditConfig, photo, tmp_path):
    path = tmp_path / "astronaut.png"
    photo.save(path)
    result = editor.edit(str(path), "a red robot", small_config)
    record = json.loads(json.dumps(result.record(path, ["out.png"], {"load_s": 1.5})))
    assert record["image"] == str(path.resolve()) and record["outputs"] == ["out.png"]
    assert record["image_sha256"] == result.image_sha256 and record["prompts"] == ["a red robot"]
    assert record["model"]["id"] == editor.model.model and record["model"]["dtype"] == "float32"
    assert record["device"] == "cpu" and record["versions"]["torch"] == torch.__version__
    assert record["timings"]["load_s"] == 1.5 and "sampling_s" in record["timings"]
    assert record["unet_evaluations"] == result.unet_evaluations
    assert EditConfig.from_dict(record["config"]) == dataclasses.replace(result.config)
