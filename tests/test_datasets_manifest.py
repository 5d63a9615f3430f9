"""User manifests (JSONL and CSV): paths relative to the manifest, optional prompts for SAM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pnpsam.bench.datasets import load_dataset
from pnpsam.manifest import DatasetError, EditItem, load_manifest

RECORDS = [
    {
        "id": "cat",
        "image": "images/cat.png",
        "source_prompt": "a photo of a cat",
        "target_prompts": ["a photo of a tiger", "a painting of a cat"],
        "points": [[10, 12], [3, 4]],
        "point_labels": [1, 0],
        "seed": 5,
        "note": "kept in extra",
    },
    {
        "image": "images/dog.png",
        "target_prompt": "a robot dog",
        "box": [1, 2, 14, 15],
        "mask": "masks/dog.png",
    },
]


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for name in ("cat", "dog"):
        Image.new("RGB", (16, 16), "white").save(tmp_path / "images" / f"{name}.png")
    mask = np.zeros((16, 16), dtype=np.uint8)
    mask[4:12, 2:8] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "dog.png")
    return tmp_path


def write_jsonl(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return path


CSV_ROWS = [
    "id,image,source_prompt,target_prompts,points,point_labels,box,mask,seed,note",
    "cat,images/cat.png,a photo of a cat,a photo of a tiger | a painting of a cat,"
    '"[[10, 12], [3, 4]]","[1, 0]",,,5,kept in extra',
    ',images/dog.png,,"[""a robot dog""]",,,"[1, 2, 14, 15]",masks/dog.png,,',
]
CSV_TEXT = "\n".join(CSV_ROWS) + "\n"


def check_items(items: list[EditItem], folder) -> None:
    cat, dog = items
    assert cat.id == "cat" and dog.id == "0001_dog"
    assert cat.image_path == folder / "images" / "cat.png"
    assert cat.target_prompts == ("a photo of a tiger", "a painting of a cat")
    assert cat.points == ((10.0, 12.0), (3.0, 4.0)) and cat.point_labels == (1, 0)
    assert cat.seed == 5 and cat.extra == {"note": "kept in extra"}
    assert cat.mask is None and cat.load_mask() is None
    assert dog.source_prompt == "" and dog.target_prompts == ("a robot dog",)
    assert dog.box == (1.0, 2.0, 14.0, 15.0) and dog.points is None and dog.seed == 0
    mask = dog.load_mask()
    assert mask is not None and mask.sum() == 8 * 6 and mask[4, 2] and not mask[3, 2]


def test_jsonl_manifest(folder):
    check_items(load_manifest(write_jsonl(folder / "edits.jsonl", RECORDS)), folder)


def test_csv_manifest_reads_the_same_items(folder):
    (folder / "edits.csv").write_text(CSV_TEXT)
    check_items(load_dataset(folder / "edits.csv"), folder)


def test_points_default_to_subject_labels(folder):
    record = {"image": "images/cat.png", "target_prompt": "x", "points": [[1, 2]]}
    (item,) = load_manifest(write_jsonl(folder / "m.jsonl", [record]))
    assert item.point_labels == (1,)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": "images/none.png"}, r"field 'image': file not found"),
        ({"target_prompts": []}, r"field 'target_prompts': expected a non-empty list"),
        ({"box": [5, 5, 1, 1]}, r"field 'box': expected x0 < x1"),
        ({"box": [1, 2, 3]}, r"field 'box': expected 4 numbers"),
        ({"points": [[1, 2, 3]]}, r"field 'points': expected \[\[x, y\], ...\]"),
        ({"point_labels": [1]}, r"field 'point_labels': expected 2 labels of 0 or 1"),
        ({"seed": "many"}, r"field 'seed': expected an integer"),
        ({"mask": "masks/none.png"}, r"field 'mask': file not found"),
    ],
)
def test_errors_name_the_entry_and_field(folder, change, message):
    records = [RECORDS[1], {**RECORDS[0], **change}]
    with pytest.raises(DatasetError, match=r"m.jsonl, line 2: entry 1 \(id 'cat'\), " + message):
        load_manifest(write_jsonl(folder / "m.jsonl", records))


def test_missing_targets_bad_json_and_duplicate_ids(folder):
    path = folder / "m.jsonl"
    with pytest.raises(DatasetError, match=r"entry 0 \(id '0000_cat'\), field 'target_prompts'"):
        load_manifest(write_jsonl(path, [{"image": "images/cat.png"}]))
    path.write_text('{"image": "images/cat.png", "target_prompt": "x"}\n{oops\n')
    with pytest.raises(DatasetError, match=r"entry 1, field '<line>': line 2 is not JSON"):
        load_manifest(path)
    with pytest.raises(DatasetError, match=r"entry 1 \(id 'cat'\), field 'id': duplicate of"):
        load_manifest(write_jsonl(path, [RECORDS[0], RECORDS[0]]))
    (folder / "m.csv").write_text('image,target_prompts,box\nimages/cat.png,x,"[1, 2"\n')
    with pytest.raises(DatasetError, match=r"m.csv, line 2: entry 0, field 'box': not JSON"):
        load_manifest(folder / "m.csv")
    with pytest.raises(DatasetError, match=r"must end in .jsonl or .csv"):
        load_manifest(folder / "m.txt")


def test_prompts_is_accepted_as_well_as_target_prompts(folder):
    """The config file and the CLI say ``prompts``; manifests accept that name too."""
    record = {k: v for k, v in RECORDS[0].items() if k != "target_prompts"}
    record["prompts"] = RECORDS[0]["target_prompts"]
    [item] = load_manifest(write_jsonl(folder / "m.jsonl", [record]))
    assert item.target_prompts == ("a photo of a tiger", "a painting of a cat")
    assert "prompts" not in item.extra
    both = {**record, "id": "dog", "target_prompts": ["x"]}
    path = folder / "m.jsonl"
    path.write_text(json.dumps(record) + "\n\n" + json.dumps(both) + "\n")  # blank line 2
    with pytest.raises(DatasetError, match=r"line 3: entry 1 .*field 'prompts': give only one"):
        load_manifest(path)
    # CSV: '|'-separated prompts; a quoted cell spanning two lines moves the next row to line 4
    (folder / "m.csv").write_text(
        'image,prompts,note\nimages/cat.png,a tiger | a cat,"two\nlines"\nimages/dog.png,[""]\n'
    )
    with pytest.raises(DatasetError, match=r"m.csv, line 4: entry 1 .*field 'prompts'"):
        load_manifest(folder / "m.csv")
    (folder / "m.csv").write_text("image,prompts\nimages/cat.png,a tiger | a cat\n")
    assert load_manifest(folder / "m.csv")[0].target_prompts == ("a tiger", "a cat")
