"""The benchmark runner end to end on the tiny SD model, tiny metric models and a manifest."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from metrics_fixtures import photo, save_tiny_clip, save_tiny_dino, save_tiny_resnet
from PIL import Image

from pnpsam.bench import BenchmarkRunner, parse_methods, read_rows, run_item
from pnpsam.cli.bench import add_bench_parser
from pnpsam.manifest import load_manifest
from pnpsam.methods import run_method
from pnpsam.metrics import (
    ClipScoreConfig,
    EditMetrics,
    EditMetricsConfig,
    LpipsConfig,
    StructureDistanceConfig,
)


@pytest.fixture(scope="module")
def metric_dirs(tmp_path_factory):
    return {
        "dino": save_tiny_dino(tmp_path_factory.mktemp("dino")),
        "clip": save_tiny_clip(tmp_path_factory.mktemp("clip")),
        "resnet": save_tiny_resnet(tmp_path_factory.mktemp("resnet")),
    }


@pytest.fixture(scope="module")
def metrics(metric_dirs):
    config = EditMetricsConfig(
        structure=StructureDistanceConfig(model_id=str(metric_dirs["dino"]), resize=64),
        clip=ClipScoreConfig(model_id=str(metric_dirs["clip"])),
        lpips=LpipsConfig(backend="transformers", backbone_id=str(metric_dirs["resnet"])),
    )
    return EditMetrics.from_pretrained(config, local_files_only=True)


@pytest.fixture
def manifest(tmp_path):
    """Three items: a photo with a subject mask, a photo without, and a broken image file."""
    (tmp_path / "img").mkdir()
    Image.fromarray(photo(48)).save(tmp_path / "img" / "astronaut.png")
    Image.fromarray(photo(48, "chelsea")).save(tmp_path / "img" / "cat.png")
    (tmp_path / "img" / "broken.png").write_bytes(b"this is not a png")
    mask = np.zeros((48, 48), dtype=np.uint8)
    mask[8:40, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "img" / "astronaut_mask.png")
    records = [
        {
            "id": "astronaut",
            "image": "img/astronaut.png",
            "mask": "img/astronaut_mask.png",
            "target_prompts": ["a photo of a cat", "a painting of a dog"],
        },
        {"id": "cat", "image": "img/cat.png", "target_prompt": "a painting of a cat", "seed": 3},
        {"id": "broken", "image": "img/broken.png", "target_prompt": "a dog"},
    ]
    path = tmp_path / "edits.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def fast_config(small_config):
    """Two inversion and two sampling steps: the runner's plumbing, not PnP's quality."""
    small_config.inversion.steps = 2
    small_config.pnp.steps = 2
    return small_config


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_writes_outputs_resumes_and_records_failures(
    editor, fast_config, metrics, manifest, tmp_path
):
    out = tmp_path / "out"
    items = load_manifest(manifest)
    methods = parse_methods("pnp,pnp-masked,sdedit:strength=0.5")
    runner = BenchmarkRunner(editor, fast_config, out, metrics=metrics, progress=False)
    first = runner.run(items, methods)
    assert (first.ran, first.skipped) == (9, 0)
    rows = read_rows(out / "rows.jsonl")
    by_key = {(r["method"], r["item"], r["prompt_index"]): r for r in rows}
    ok = by_key[("pnp", "astronaut", 1)]
    assert ok["status"] == "ok" and ok["prompt"] == "a painting of a dog"
    assert ok["structure_subject"] >= 0 and "clip_background" in ok and "psnr_bg" in ok
    assert (out / ok["image"]).is_file()
    assert Image.open(out / ok["image"]).size == (32, 32)  # the model input size
    assert "structure_subject" not in by_key[("pnp", "cat", 0)]  # no mask: no split
    broken = by_key[("sdedit:strength=0.5", "broken", 0)]
    assert broken["status"] == "failed" and "cannot read" in broken["error"]
    unmasked = by_key[("pnp-masked", "cat", 0)]
    assert unmasked["status"] == "failed" and "needs a subject mask" in unmasked["error"]
    assert first.failed == 4  # broken x 3 methods + pnp-masked on the maskless item

    table = (out / "summary.md").read_text()
    assert "| pnp | 2 | 1 |" in table and "| pnp-masked | 1 | 2 |" in table
    with (out / "summary.csv").open() as handle:
        summary = {row["method"]: row for row in csv.DictReader(handle)}
    assert int(summary["sdedit:strength=0.5"]["structure_n"]) == 3  # 2 + 1 prompts
    for name in ("tradeoff.png", "grid.png"):
        assert Image.open(out / name).format == "PNG"

    before = snapshot(out / "images")
    rows_before = (out / "rows.jsonl").read_bytes()
    second = runner.run(items, methods)
    assert (second.ran, second.skipped) == (0, 9)
    assert snapshot(out / "images") == before
    assert (out / "rows.jsonl").read_bytes() == rows_before

    retry = BenchmarkRunner(
        editor, fast_config, out, metrics=metrics, progress=False, retry_failed=True
    ).run(items, methods)
    assert (retry.ran, retry.failed) == (4, 4)
    assert snapshot(out / "images") == before


def test_changed_settings_are_not_skipped(editor, fast_config, manifest, tmp_path):
    items = load_manifest(manifest)[1:2]  # one prompt
    methods = parse_methods("pnp")
    BenchmarkRunner(editor, fast_config, tmp_path / "o", progress=False).run(items, methods)
    fast_config.pnp.guidance = 3.0
    again = BenchmarkRunner(editor, fast_config, tmp_path / "o", progress=False)
    assert again.run(items, methods).ran == 1


def test_a_photo_replaced_under_the_same_path_is_edited_again(
    editor, fast_config, manifest, tmp_path
):
    items = load_manifest(manifest)[1:2]  # "cat", one prompt
    methods = parse_methods("pnp")
    BenchmarkRunner(editor, fast_config, tmp_path / "o", progress=False).run(items, methods)
    same = BenchmarkRunner(editor, fast_config, tmp_path / "o", progress=False)
    assert same.run(items, methods).ran == 0  # same bytes: resumed
    Image.fromarray(photo(48, "astronaut")).save(items[0].image_path)  # other bytes, same name
    again = BenchmarkRunner(editor, fast_config, tmp_path / "o", progress=False)
    assert again.run(items, methods).ran == 1


def test_cli_sweep_end_to_end(tiny_model_dir, metric_dirs, manifest, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "bench",
            "--dataset",
            str(manifest),
            "--methods",
            "pnp",
            "--sweep",
            "pnp_f_t=0.0,1.0",
            "--limit",
            "2",
            "--out",
            str(tmp_path / "sweep"),
            "--model",
            str(tiny_model_dir),
            "--device",
            "cpu",
            "--size",
            "32",
            "--steps",
            "2",
            "--inversion-steps",
            "2",
            "--dino-model",
            str(metric_dirs["dino"]),
            "--clip-model",
            str(metric_dirs["clip"]),
            "--lpips",
            "transformers",
            "--lpips-backbone",
            str(metric_dirs["resnet"]),
            "--quiet",
        ]
    )
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "| pnp:pnp_f_t=0.0 | 2 | 0 |" in printed and "| pnp:pnp_f_t=1.0 | 2 | 0 |" in printed
    grid = Image.open(tmp_path / "sweep" / "grid.png")
    assert grid.size == (120 + 3 * 128, 40 + 2 * 128)  # source + 2 sweep values, 2 items
    rows = read_rows(tmp_path / "sweep" / "rows.jsonl")
    no_injection = [r["structure"] for r in rows if r["method"] == "pnp:pnp_f_t=0.0"]
    assert len(no_injection) == 3 and all(v >= 0 for v in no_injection)


@pytest.fixture
def subject_mask_calls(editor, monkeypatch):
    """Every subject mask the editor makes (a spy on the real method, nothing replaced)."""
    made = []
    real = editor.subject_mask

    def spy(*args, **kwargs):
        subject = real(*args, **kwargs)
        if subject is not None:  # None: no subject asked for (plain PnP)
            made.append(subject)
        return subject

    monkeypatch.setattr(editor, "subject_mask", spy)
    return made


def test_run_item_returns_rows_and_images_and_writes_nothing(
    editor, fast_config, manifest, subject_mask_calls, tmp_path, monkeypatch
):
    astronaut = load_manifest(manifest)[0]  # has a mask file, two prompts
    monkeypatch.chdir(tmp_path / "img")
    inputs = snapshot(tmp_path)
    for spec in parse_methods("pnp-masked,pnp,sdedit"):
        config = spec.edit_config(editor.resolve(fast_config))
        subject_mask_calls.clear()
        result = run_item(editor, astronaut, spec, config, "hash", metrics=None)
        assert len(subject_mask_calls) == 1, spec.label  # made once: by the edit or for scores
        edits = [f"images/{spec.slug}/astronaut_{k}.png" for k in (0, 1)]
        assert list(result.images) == ["images/source/astronaut.png", *edits]
        assert all(picture.size == (32, 32) for picture in result.images.values())
        assert [row["image"] for row in result.rows] == edits and not result.failed
        assert all(row["has_mask"] and row["settings"] == "hash" for row in result.rows)
        details = result.rows[0]["details"]
        if spec.name == "sdedit":
            assert details == {"strength": 0.6}
        else:  # where the seconds went, and the mask (read by the runner, given as an array)
            assert details["timings"]["sampling_s"] > 0
            assert details.get("mask_method") == ("array" if spec.info.uses_mask else None)
    assert snapshot(tmp_path) == inputs  # nothing written, not even next to the inputs


def test_method_output_carries_the_mask_the_edit_used(
    editor, fast_config, manifest, subject_mask_calls
):
    astronaut = load_manifest(manifest)[0]
    image = Image.open(astronaut.image_path).convert("RGB")
    mask = astronaut.load_mask().astype(np.float32)
    masked, sdedit = parse_methods("pnp-masked,sdedit")
    config = masked.edit_config(editor.resolve(fast_config))
    output = run_method(masked, editor, image, mask, ["a cat"], config)
    assert output.subject is subject_mask_calls[-1].mask  # the very mask, not a second one
    assert output.subject.shape == (32, 32) and output.subject.dtype == np.float32
    assert output.subject[16, 16] == 1.0 and output.subject[0, 0] == 0.0  # box 12..36 x 8..40
    assert run_method(sdedit, editor, image, mask, ["a cat"], config).subject is None


def test_run_item_captures_failures_as_rows(editor, fast_config, manifest):
    _, cat, broken = load_manifest(manifest)
    for item, spec, message in (
        (broken, "pnp", "cannot read"),
        (cat, "pnp-masked", "needs a subject mask"),
    ):
        (method,) = parse_methods(spec)
        config = method.edit_config(editor.resolve(fast_config))
        result = run_item(editor, item, method, config, "hash")
        assert result.failed and result.images == {}
        assert [(r["status"], r["prompt_index"]) for r in result.rows] == [("failed", 0)]
        assert message in result.rows[0]["error"] and result.rows[0]["method"] == spec
