"""The README's main command: ``pnpsam demo`` on the shipped toy model, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from pnpsam.bench.toy import DEMO_METHODS, METHOD_NAMES
from pnpsam.cli import main
from pnpsam.toyworld.pairs import TOY_MODEL, toy_pairs


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
    assert grid.height > 2 * 64 and grid.width > (len(DEMO_METHODS) + 1) * 128
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"] == str(TOY_MODEL) and report["targets"] == "colour"
    names = [row["method"] for row in report["methods"]]
    assert names == [METHOD_NAMES.get(spec, spec) for spec in DEMO_METHODS]
    for row in report["methods"]:
        assert 0.0 <= row["iou"] <= 1.0 and 0.0 <= row["background"] <= 1.0
    table = (out / "metrics.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    assert report["set"] == "dev" and report["seed"] == 100
    assert "Paired differences to plain PnP" in table and "[" in table  # intervals
