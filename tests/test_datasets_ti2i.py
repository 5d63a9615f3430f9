"""PnP's TI2I benchmark YAML files: real-image entries and generated (-Fake-) entries."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image

from pnpsam.bench.datasets import load_dataset, load_pnp_ti2i
from pnpsam.manifest import DatasetError

REAL = [
    {
        "init_img": "/ImageNetR-TI2I/cat/sketch_20.jpg",
        "source_prompt": "a sketch of a cat",
        "target_prompts": ["an image of a dog", "an image of a bear"],
    },
    {"init_img": "/ImageNetR-TI2I/jeep/toy_3.jpg", "target_prompts": ["a photo of a tank"]},
]
FAKE = [
    {
        "source_prompt": "a photo of a horse in mud",
        "seed": 50,
        "scale": 5.0,
        "ddim_steps": 50,
        "target_prompts": ["a photo of a zebra in the snow"],
    }
]


def write_benchmark(root, entries, name="imnetr-ti2i.yaml"):
    for entry in entries:
        if "init_img" in entry:
            path = root / entry["init_img"].lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(path)
    (root / name).write_text(yaml.safe_dump(entries))
    return root / name


def test_real_entries_resolve_images_under_the_benchmark_root(tmp_path):
    items = load_pnp_ti2i(write_benchmark(tmp_path, REAL), seed=7)
    assert items[0].image_path == tmp_path / "ImageNetR-TI2I/cat/sketch_20.jpg"
    assert items[0].source_prompt == "a sketch of a cat"
    assert items[0].target_prompts == ("an image of a dog", "an image of a bear")
    assert items[1].source_prompt == ""  # absent in most ImageNetR-TI2I entries
    assert [i.seed for i in items] == [7, 7]
    assert [i.id for i in items] == ["000_sketch_20", "001_toy_3"]


def test_yaml_inside_the_benchmark_folder_finds_root_relative_images(tmp_path):
    write_benchmark(tmp_path, REAL)
    nested = tmp_path / "ImageNetR-TI2I" / "imnetr-ti2i.yaml"
    nested.write_text(yaml.safe_dump(REAL))
    assert load_dataset(nested)[0].image_path == tmp_path / "ImageNetR-TI2I/cat/sketch_20.jpg"


def test_generated_entries_have_no_image_and_keep_their_settings(tmp_path):
    (item,) = load_pnp_ti2i(write_benchmark(tmp_path, FAKE, "imnetr-fake-ti2i.yaml"))
    assert item.image_path is None
    assert item.seed == 50
    assert item.extra == {"scale": 5.0, "ddim_steps": 50}
    assert item.id == "000_a_photo_of_a_horse_in_mud"


def test_errors_name_the_entry_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump([REAL[0], {"init_img": "/x.jpg", "target_prompts": "a dog"}]))
    write_benchmark(tmp_path, REAL[:1])
    with pytest.raises(DatasetError, match=r"entry 1, field 'target_prompts'"):
        load_pnp_ti2i(path)
    path.write_text(yaml.safe_dump([{"init_img": "/nowhere.jpg", "target_prompts": ["a"]}]))
    with pytest.raises(DatasetError, match=r"entry 0, field 'init_img': file not found"):
        load_pnp_ti2i(path)
    path.write_text(yaml.safe_dump([{"target_prompts": ["a"]}]))
    with pytest.raises(DatasetError, match=r"field 'init_img': missing, and no 'source_prompt'"):
        load_pnp_ti2i(path)
    path.write_text(yaml.safe_dump({"not": "a list"}))
    with pytest.raises(DatasetError, match="expected a YAML list"):
        load_pnp_ti2i(path)
