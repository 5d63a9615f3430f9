"""``pnpsam bench`` as a user meets it: hostile ids, bad limits, failures, resume by weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from pnpsam.cli import main
from pnpsam.paths import UnsafePathError, inside, safe_name

FAST = ["--size", "32", "--steps", "2", "--inversion-steps", "2", "--device", "cpu"]
FAST += ["--no-metrics", "--quiet"]


def write_manifest(folder: Path, ids: list[str], broken: bool = False) -> Path:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), (200, 60, 30)).save(folder / "img" / "red.png")
    records = [{"id": i, "image": "img/red.png", "target_prompt": "a cat"} for i in ids]
    if broken:
        (folder / "img" / "broken.png").write_bytes(b"not a png")
        records.append({"id": "broken", "image": "img/broken.png", "target_prompt": "a dog"})
    path = folder / "edits.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_safe_name_keeps_plain_ids_and_makes_others_one_distinct_component() -> None:
    assert safe_name("astronaut_01.v2") == "astronaut_01.v2"
    hostile = ["../../../x", "a/b:c*d?e", "a_b_c_d_e", "..", ".hidden", "CON", "", "x" * 300]
    names = [safe_name(text) for text in hostile]
    assert len(set(names)) == len(names)  # "a/b:c*d?e" and "a_b_c_d_e" stay apart
    for name in names:
        assert "/" not in name and not name.startswith(".") and 0 < len(name) <= 100
    assert safe_name("a/b") == safe_name("a/b")  # stable, so a resumed run finds its files
    with pytest.raises(UnsafePathError, match="outside"):
        inside("out", "..", "x.png")


def test_bench_keeps_hostile_ids_inside_out_and_fails_loudly(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "data", ["../../../escaped_by_id", "a/b:c*d?e"], True)
    out = tmp_path / "deep" / "er" / "out"
    before = {p for p in tmp_path.rglob("*")}
    args = ["bench", "--dataset", str(manifest), "--out", str(out), *FAST]
    assert main([*args, "--model", str(tiny_model_dir)]) == 1  # one item failed
    err = capsys.readouterr().err
    assert "1 of 3 (method, item) pairs failed" in err
    outside = {p for p in tmp_path.rglob("*") if out not in (p, *p.parents)} - before
    assert outside == {tmp_path / "deep", tmp_path / "deep" / "er"}
    pictures = sorted(p.relative_to(out) for p in (out / "images").rglob("*.png"))
    assert len(pictures) == 4  # 2 sources + 2 edits, each one name below its folder
    assert all(len(p.parts) == 3 for p in pictures)
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert {r["item"] for r in rows} == {"../../../escaped_by_id", "a/b:c*d?e", "broken"}

    # the same weights spelled relative to another working directory: nothing is recomputed
    relative = Path("..") / tiny_model_dir.relative_to(tiny_model_dir.parents[1])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tiny_model_dir.parent)
        assert main([*args, "--model", str(relative)]) == 1  # the failure is still recorded
    assert "ran 0, skipped 3" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("ids", "extra", "message"),
    [
        (["a"], ["--limit", "-1"], "--limit must be a count of items >= 1; got -1"),
        (["a"], ["--limit", "0"], "--limit must be a count of items >= 1; got 0"),
        ([], [], "holds no items: nothing to run"),
    ],
)
def test_bench_refuses_negative_limits_and_empty_runs(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    ids: list[str],
    extra: list[str],
    message: str,
) -> None:
    manifest = write_manifest(tmp_path, ids)
    args = [
        "bench",
        "--dataset",
        str(manifest),
        "--out",
        str(tmp_path / "o"),
        "--model",
        str(tmp_path / "no-model"),
    ]
    assert main([*args, *extra]) == 2  # before any model is loaded
    assert message in capsys.readouterr().err
