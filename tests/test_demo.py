"""The README's main command: ``pnpsam demo`` on the shipped toy model, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from pnpsam.bench.toy import DEMO_METHODS, METHOD_NAMES
from pnpsam.cli import main
from pnpsam.toyworld.pairs import TOY_MODEL, toy_pairs
from pnpsam.toyworld.world import COLORS


def test_toy_pairs_change_colour_and_background_only() -> None:
    pairs = toy_pairs(5, seed=3)
    assert len(pairs) == 5
    for pair in pairs:
        assert pair.target.color != pair.source.color
        assert pair.target.background != pair.source.background
        assert (pair.target.shape, pair.target.center) == (pair.source.shape, pair.source.center)
        assert pair.subject.any() and pair.clutter.any()
    assert [p.target for p in toy_pairs(5, seed=3)] == [p.target for p in pairs]
    recolour = toy_pairs(5, seed=3, change_background=False)
    for pair, same_colour in zip(recolour, pairs, strict=True):
        assert pair.target.background == pair.source.background
        assert pair.target.color == same_colour.target.color


def test_demo_writes_a_grid_and_a_table_with_every_method(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--pairs", "1", "--steps", "8", "--device", "cpu"]
    argv.append("--keep-background")  # colour-only targets; toy_pairs is tested both ways
    argv += ["--set", "dev"]
    assert main(argv) == 0
    grid = Image.open(out / "grid.png")
    assert grid.height > 2 * 64 and grid.width > (len(DEMO_METHODS) + 2) * 128
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"] == str(TOY_MODEL) and report["targets"] == "colour"
    # every method edited with the mask a user's one click gives, through the toy's own SAM
    assert report["mask"] == "click" and report["mask_method"] == "sam"
    assert report["mask_iou"][0] >= 0.9
    assert "masks from 1 click (sam, IoU with the exact mask" in (out / "metrics.md").read_text()
    # the grid's second column shows that mask: tinted on the subject, the photo elsewhere
    pair = toy_pairs(1, seed=100, change_background=False)[0]
    cells = np.asarray(grid.convert("RGB"), np.int32)
    label_width, header, cell = 150, 40, 130  # comparison_grid's layout at scale 2
    rows = cells[header + 1 : header + 129]
    tiles = [rows[:, label_width + c * cell + 1 :][:, :128] for c in (0, 1)]
    changed = np.abs(tiles[1] - tiles[0]).sum(2)[::2, ::2] > 30  # back to the 64 px grid
    far = ~binary_dilation(pair.subject, iterations=3)
    assert changed[pair.subject].mean() > 0.9 and changed[far].mean() < 0.05
    names = [row["method"] for row in report["methods"]]
    assert names == [METHOD_NAMES.get(spec, spec) for spec in DEMO_METHODS]
    for row in report["methods"]:
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["background"] <= 1.0
    table = (out / "metrics.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert report["set"] == "dev" and report["seed"] == 100
    assert "Paired differences to plain PnP" in table and "[" in table  # intervals


def test_a_killed_demo_keeps_its_pairs_and_resumes_with_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--pairs", "3", "--steps", "2", "--device", "cpu"]
    argv += ["--methods", "pnp,scheme1", "--quiet"]
    entry = "import sys; from pnpsam.cli import main; sys.exit(main())"
    env = {**os.environ, "PNPSAM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", entry, *argv], env=env)
    deadline = time.monotonic() + 300
    while not (out / "metrics.json").exists():  # written once the first pair is done
        assert process.poll() is None and time.monotonic() < deadline, "no pair finished"
        time.sleep(0.02)
    process.kill()
    process.wait()
    partial = json.loads((out / "metrics.json").read_text())
    assert not partial["complete"] and partial["pairs"] < 3 and partial["pairs_planned"] == 3
    kept = (out / "edits.jsonl").read_text().splitlines()
    assert 2 <= len(kept) < 6  # killed mid-way: some edits kept, not all made
    images = {p: p.read_bytes() for p in (out / "images").rglob("*.png")}
    assert Image.open(out / "grid.png").height > 64  # the partial grid

    assert main(argv) == 0
    assert f"{len(kept)} of 6 edits were made by an earlier run" in capsys.readouterr().err
    lines = (out / "edits.jsonl").read_text().splitlines()
    assert lines[: len(kept)] == kept and len(lines) == 6  # only the rest was edited
    assert {json.loads(line)["pair"] for line in lines[len(kept) :]} <= {1, 2}
    assert all(path.read_bytes() == data for path, data in images.items())
    report = json.loads((out / "metrics.json").read_text())
    assert report["complete"] and report["pairs"] == 3
    assert main(argv) == 0  # a finished demo: nothing edited again
    assert len((out / "edits.jsonl").read_text().splitlines()) == 6


def test_shipped_toy_photos_are_the_renders_and_their_masks(tmp_path: Path) -> None:
    from pnpsam.toyworld.photos import MANIFEST, TOY_PHOTOS, TOY_PHOTOS_DIR, write_toy_photos

    for fresh in write_toy_photos(tmp_path):
        shipped = TOY_PHOTOS_DIR / fresh.relative_to(tmp_path)
        assert shipped.read_bytes() == fresh.read_bytes(), shipped
    for stem, (spec, _, prompts) in TOY_PHOTOS.items():
        photo = np.asarray(Image.open(TOY_PHOTOS_DIR / f"{stem}.png"))
        mask = np.asarray(Image.open(TOY_PHOTOS_DIR / "masks" / f"{stem}.png")) > 127
        assert photo.shape == (64, 64, 3) and 0.05 < mask.mean() < 0.4
        assert (photo[mask] == COLORS[spec.color]).all()  # the mask is exactly the subject
        assert all(p.split()[2] == spec.shape for p in prompts)  # the shape kept, as PnP does
    assert len((TOY_PHOTOS_DIR / MANIFEST).read_text().splitlines()) == len(TOY_PHOTOS)
