"""A JSON record written before the re-layout still re-runs to the same pixels.

``tests/data/record_pre_layout`` holds the record and outputs of ``pnpsam edit`` at commit
ea75a41 (before the re-layout): the tiny seeded SD 1.5-layout model, the astronaut photo, two
prompts, a click on the subject (GrabCut fallback), 64 px, 10 steps. Only the image and model
paths are placeholders. New config fields must resolve to the old behaviour for such records.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from pnpsam.cli import main

DATA = Path(__file__).parent / "data" / "record_pre_layout"


def test_pre_layout_record_reproduces_its_pixels(tiny_model_dir: Path, photo, tmp_path) -> None:
    record = json.loads((DATA / "astro.json").read_text())
    image = tmp_path / "astro.png"
    photo.save(image)
    record["image"] = str(image)
    record["config"]["model"]["model"] = str(tiny_model_dir)
    config = tmp_path / "record.json"
    config.write_text(json.dumps(record))
    out = tmp_path / "again"
    assert main(["edit", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    for name in [*record["outputs"], "astro_mask.png"]:
        before = np.asarray(Image.open(DATA / name), dtype=int)
        after = np.asarray(Image.open(out / name), dtype=int)
        assert before.shape == after.shape
        assert np.abs(before - after).max() <= 1, name  # float rounding across CPUs at most
