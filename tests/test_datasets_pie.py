"""PIE-Bench: RLE masks decoded in DirectInversion's convention, and the mapping-file loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pnpsam.bench.datasets import RleMask, decode_pie_rle, load_dataset, load_pie_bench
from pnpsam.manifest import DatasetError


def encode_runs(mask: np.ndarray) -> list[int]:
    """Test helper: (start, length) pairs of the True runs of a row-major flattened mask."""
    flat = np.concatenate([[False], mask.ravel(), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = edges[::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts, strict=True) for v in pair]


def test_runs_are_start_length_pairs_over_row_major_pixels():
    # 4 rows x 5 columns; flat indices 2, 3, 4 (row 0) and 10, 11 (row 2).
    expected = np.array(
        [
            [0, 0, 1, 1, 1],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    decoded = decode_pie_rle([2, 3, 10, 2], shape=(4, 5), mark_border=False)
    np.testing.assert_array_equal(decoded, expected)


def test_a_run_past_the_end_is_clipped():
    decoded = decode_pie_rle([18, 10], shape=(4, 5), mark_border=False)
    assert decoded.ravel().nonzero()[0].tolist() == [18, 19]


def test_border_is_marked_as_edited_like_pie_bench():
    decoded = decode_pie_rle([12, 1], shape=(5, 5))
    expected = np.ones((5, 5), dtype=bool)
    expected[1:4, 1:4] = False
    expected[2, 2] = True  # flat index 12
    np.testing.assert_array_equal(decoded, expected)


def test_hand_made_512_mask_round_trips():
    mask = np.zeros((512, 512), dtype=bool)
    mask[100:200, 50:300] = True
    mask[400, 500:] = True  # a run that reaches the row end
    mask[401, :3] = True  # and one that starts the next row
    decoded = RleMask(tuple(encode_runs(mask)), mark_border=False).decode()
    np.testing.assert_array_equal(decoded, mask)


@pytest.mark.parametrize(
    ("pairs", "message"), [([1, 2, 3], "odd count 3"), ([0, -4], "must be >= 0")]
)
def test_bad_runs_are_rejected(pairs, message):
    with pytest.raises(ValueError, match=message):
        decode_pie_rle(pairs, shape=(4, 4))


def write_pie(tmp_path, entries: dict) -> None:
    for entry in entries.values():
        image = tmp_path / "annotation_images" / entry["image_path"]
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), "gray").save(image)
    (tmp_path / "mapping_file.json").write_text(json.dumps(entries))


def entry(image_path: str, edit_type: str, mask: list[int]) -> dict:
    return {
        "image_path": image_path,
        "original_prompt": "a cat sitting on a [wooden] bench",
        "editing_prompt": "a cat sitting on a [metal] bench",
        "editing_instruction": "Make the bench metal",
        "editing_type_id": edit_type,
        "blended_word": "bench bench",
        "mask": mask,
    }


def test_loader_reads_prompts_masks_and_metadata(tmp_path):
    write_pie(
        tmp_path,
        {
            "000000000000": entry("0_random_140/000000000000.jpg", "0", [600, 10]),
            "711000000000": entry("7_change_material/711000000000.jpg", "7", []),
        },
    )
    items = load_pie_bench(tmp_path)
    assert [i.id for i in items] == ["000000000000", "711000000000"]
    first = items[0]
    assert first.image_path == tmp_path / "annotation_images/0_random_140/000000000000.jpg"
    assert first.source_prompt == "a cat sitting on a wooden bench"
    assert first.target_prompts == ("a cat sitting on a metal bench",)
    assert first.seed == 1234
    assert first.extra["blended_word"] == "bench bench"
    assert first.extra["editing_prompt_marked"] == "a cat sitting on a [metal] bench"
    mask = first.load_mask()
    assert mask is not None and mask.shape == (512, 512)
    assert mask[1, 88:98].all() and not mask[1, 98]  # 600 = row 1, column 88
    only_seven = load_pie_bench(tmp_path / "mapping_file.json", edit_types=["7"])
    assert [i.id for i in only_seven] == ["711000000000"]
    assert [i.id for i in load_dataset(tmp_path)] == [i.id for i in items]


def test_loader_errors_name_the_entry_and_field(tmp_path):
    write_pie(tmp_path, {"000000000001": entry("a/1.jpg", "0", [1, 2, 3])})
    with pytest.raises(DatasetError, match=r"entry 0 \(id '000000000001'\), field 'mask'"):
        load_pie_bench(tmp_path)
    broken = entry("a/1.jpg", "0", [])
    del broken["editing_prompt"]
    write_pie(tmp_path, {"000000000002": broken})
    with pytest.raises(DatasetError, match=r"'000000000002'\), field 'editing_prompt': missing"):
        load_pie_bench(tmp_path)
    (tmp_path / "mapping_file.json").write_text(
        json.dumps({"000000000003": entry("missing/3.jpg", "0", [])})
    )
    with pytest.raises(DatasetError, match=r"field 'image_path': file not found"):
        load_pie_bench(tmp_path)
