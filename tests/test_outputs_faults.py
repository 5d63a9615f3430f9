"""Killed, full-disk, concurrent and read-only runs of the real command on the tiny model.

After each fault: every visible file whole, the re-run of the same command finishes the set,
files finished before the fault are not rewritten (same bytes, same mtime), no hidden file.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnpsam.cli import main
from pnpsam.outputs import LOCK_NAME

FAST = ["--size", "32", "--steps", "2", "--inversion-steps", "2", "--device", "cpu", "--quiet"]
DRIVER = Path(__file__).with_name("fault_driver.py")


@pytest.fixture()
def edit_argv(tiny_model_dir: Path, tmp_path: Path, photo: Image.Image) -> list[str]:
    """An edit with two prompts and a mask file: writes 2 PNGs, mask, overlay and record."""
    image = tmp_path / "astro.png"
    photo.resize((48, 32)).save(image)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:24, 12:36] = 255
    Image.fromarray(mask).save(tmp_path / "subject.png")
    return [
        "edit",
        str(image),
        "--prompt",
        "a red robot",
        "--prompt",
        "a blue dog",
        "--mask",
        str(tmp_path / "subject.png"),
        "--out",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model_dir),
        *FAST,
    ]


def state(folder: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (mtime_ns, bytes) of every file in ``folder``."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}


def assert_visible_files_whole(folder: Path) -> None:
    for path in folder.glob("[!.]*.png"):
        with Image.open(path) as image:
            image.load()  # raises on a truncated PNG


def driver_env(pause_file: Path | None = None) -> dict[str, str]:
    """The fault driver's environment: this interpreter's path, one thread, and the file it
    creates when it pauses (``pause:N``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    if pause_file is not None:
        env["PNPSAM_PAUSE_FILE"] = str(pause_file)
    return env


def paused_driver(argv: list[str], rename: int, flag: Path) -> subprocess.Popen[str]:
    """Start the fault driver on ``argv`` paused before its ``rename``-th rename and wait until
    it pauses (``flag`` exists), it exits, or 300 s pass; the caller asserts on ``flag``."""
    run = subprocess.Popen(
        [sys.executable, str(DRIVER), f"pause:{rename}", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=driver_env(flag),
    )
    deadline = time.monotonic() + 300
    while not flag.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return run


def killed(runs: list[tuple[list[str], str]]) -> None:
    """Run each (argv, moment) in its own process at once; each must die by SIGKILL."""
    env = driver_env()
    procs = [
        subprocess.Popen(
            [sys.executable, str(DRIVER), moment, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        for argv, moment in runs
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == -9, err[-2000:]


def with_out(argv: list[str], out: Path) -> list[str]:
    at = argv.index("--out") + 1
    return [*argv[:at], str(out), *argv[at + 1 :]]


def test_edit_killed_at_two_moments_then_resumed_rewrites_nothing_finished(
    edit_argv, capsys
) -> None:
    base = Path(edit_argv[edit_argv.index("--out") + 1]).parent
    # renames of a fresh run: journal, mask, overlay, PNG 0, PNG 1, record
    moments = {"before:4": base / "a", "after:5": base / "b"}
    killed([(with_out(edit_argv, out), moment) for moment, out in moments.items()])
    for out in moments.values():
        assert_visible_files_whole(out)
    a, b = (state(out) for out in moments.values())
    # a: mask and overlay finished, PNG 0 written as a temporary and not renamed, no record
    assert {"astro_mask.png", "astro_mask_overlay.png", "astro.json.partial"} <= set(a)
    assert "astro.json" not in a and any(n.startswith(".astro_00") for n in a)
    # b: every PNG finished, no record (the record's own moments: tests/test_outputs.py)
    assert "astro.json" not in b and "astro_01_a-blue-dog.png" in b
    for out, before in zip(moments.values(), (a, b), strict=True):
        assert main(with_out(edit_argv, out)) == 0
        final = state(out)
        record = json.loads((out / "astro.json").read_text())
        assert sorted(final) == sorted([*record["files"], "astro.json"])  # nothing hidden
        assert len(record["files"]) == 4 and record["prompts"] == ["a red robot", "a blue dog"]
        for name, sha in record["files"].items():
            assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha
        rewritten = [n for n, v in before.items() if n in record["files"] and final[n] != v]
        assert rewritten == []  # finished before the kill: same bytes and mtime
    assert "keeping astro_mask.png, astro_mask_overlay.png" in capsys.readouterr().err
    finished = state(base / "a")
    assert main(with_out(edit_argv, base / "a")) == 0  # again: nothing to do, nothing written
    assert "nothing to do" in capsys.readouterr().out
    assert state(base / "a") == finished


def test_edit_on_a_full_disk_fails_in_one_line_and_resumes(
    edit_argv, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = Path(edit_argv[edit_argv.index("--out") + 1])
    real = os.write
    budget = [3000]  # bytes the disk takes before it is full: journal, mask, part of the rest

    def write(fd: int, data: bytes) -> int:
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        count = real(fd, bytes(memoryview(data)[: budget[0]]))
        budget[0] -= count
        return count

    monkeypatch.setattr(os, "write", write)
    assert main(edit_argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert "No space left on device" in lines[0] and "re-run" in lines[0]
    monkeypatch.setattr(os, "write", real)
    before = state(out)
    assert "astro.json" not in before and not any(n.startswith(".") for n in before)
    assert_visible_files_whole(out)
    assert main(edit_argv) == 0
    final = state(out)
    record = json.loads((out / "astro.json").read_text())
    assert sorted(final) == sorted([*record["files"], "astro.json"])
    for name, value in before.items():
        if name in record["files"]:
            assert final[name] == value


def test_edit_killed_between_its_two_pngs_keeps_the_first_and_writes_only_the_second(
    edit_argv, capsys
) -> None:
    out = Path(edit_argv[edit_argv.index("--out") + 1])
    # renames of a fresh run: journal, mask, overlay, PNG 0, PNG 1, record: killed after PNG 0
    killed([(edit_argv, "after:4")])
    before = state(out)
    assert "astro_00_a-red-robot.png" in before and "astro_01_a-blue-dog.png" not in before
    assert_visible_files_whole(out)
    assert main(edit_argv) == 0
    final = state(out)
    kept = ["astro_mask.png", "astro_mask_overlay.png", "astro_00_a-red-robot.png"]
    assert {name: final[name] for name in kept} == {name: before[name] for name in kept}
    assert "keeping astro_mask.png, astro_mask_overlay.png, astro_00" in capsys.readouterr().err
    record = json.loads((out / "astro.json").read_text())
    assert sorted(final) == sorted([*record["files"], "astro.json"])  # nothing hidden
    for name, sha in record["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == sha


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB file system (tmpfs), unmounted afterwards; skipped, with the reason,
    where this process may not mount one (not root, no CAP_SYS_ADMIN, no tmpfs)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        where = "CI=true: " if os.environ.get("CI") == "true" else ""
        pytest.skip(f"{where}cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_edit_whose_disk_fills_during_the_run_fails_in_one_line_and_resumes(
    edit_argv, small_disk: Path, tmp_path: Path
) -> None:
    """The check at start passes; the disk fills (another writer) while the edit runs, after
    its mask is written; the edit stops with one line, and once space is freed the same
    command finishes the set keeping what was finished."""
    argv = with_out(edit_argv, small_disk / "out")
    flag = tmp_path / "paused"
    # paused before its 3rd rename (the overlay): journal and mask are on the disk
    run = paused_driver(argv, 3, flag)
    assert flag.exists(), "the edit never reached its third file"
    filler = small_disk / "filler.bin"
    with open(filler, "wb") as fill:  # another program takes every free byte
        try:
            while True:
                fill.write(b"\0" * (1 << 20))
                fill.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    flag.unlink()  # go on: the next write finds the disk full
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2, err[-2000:]
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "No space left on device" in lines[0] and "re-run" in lines[0]
    out = small_disk / "out"
    before = state(out)
    assert "astro_mask.png" in before and "astro.json" not in before
    assert not [n for n in before if n.startswith(".") and n != ".pnpsam.lock"]
    assert_visible_files_whole(out)
    filler.unlink()  # space freed: the same command finishes the set
    assert main(argv) == 0
    final = state(out)
    record = json.loads((out / "astro.json").read_text())
    assert sorted(final) == sorted([*record["files"], "astro.json"])
    assert final["astro_mask.png"] == before["astro_mask.png"]  # kept, not rewritten


def test_overwrite_with_fewer_prompts_and_no_subject_leaves_no_old_files(edit_argv) -> None:
    out = Path(edit_argv[edit_argv.index("--out") + 1])
    assert main(edit_argv) == 0
    mask_at = edit_argv.index("--mask")
    fewer = edit_argv[: mask_at - 2] + edit_argv[mask_at + 2 :]  # one prompt, no mask
    assert main(fewer) == 2  # a finished set made with other settings: refused
    assert main([*fewer, "--overwrite"]) == 0
    record = json.loads((out / "astro.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["astro.json", "astro_00_a-red-robot.png"]
    assert list(record["files"]) == ["astro_00_a-red-robot.png"]


def test_second_writer_and_read_only_folder_fail_before_the_model_loads(edit_argv, capsys) -> None:
    out = Path(edit_argv[edit_argv.index("--out") + 1])
    out.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (out / LOCK_NAME).write_text(
            json.dumps({"pid": sleeper.pid, "host": os.uname().nodename, "command": "pnpsam"})
        )
        model_at = edit_argv.index("--model") + 1
        no_model = [*edit_argv[:model_at], "/missing/model", *edit_argv[model_at + 1 :]]
        assert main(no_model) == 2  # refused on the lock, before the (bad) model is tried
        assert f"in use by pid {sleeper.pid}" in capsys.readouterr().err
    finally:
        sleeper.kill()
        sleeper.wait()
    (out / LOCK_NAME).unlink()
    os.chmod(out, 0o555)
    try:
        if os.access(out, os.W_OK):  # root writes anyway: make a path that cannot be a folder
            (out / "blocker").write_text("x")
            no_model[no_model.index(str(out))] = str(out / "blocker" / "sub")
        assert main(no_model) == 2
        err = capsys.readouterr().err
        assert "not writable" in err and "Traceback" not in err
    finally:
        os.chmod(out, 0o755)


@pytest.fixture()
def bench_argv(tiny_model_dir: Path, tmp_path: Path, photo: Image.Image) -> list[str]:
    """A bench over three photos with plain PnP and no metric models."""
    rows = []
    for k in range(3):
        photo.rotate(90 * k).resize((32, 32)).save(tmp_path / f"p{k}.png")
        rows.append({"id": f"p{k}", "image": f"p{k}.png", "target_prompt": "a red robot"})
    manifest = tmp_path / "edits.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, model = str(tmp_path / "bench"), str(tiny_model_dir)
    return [
        *("bench", "--dataset", str(manifest), "--methods", "pnp", "--no-metrics"),
        *("--out", out, "--model", model, *FAST),
    ]


def test_bench_second_writer_refused_then_holder_killed_and_resumed(
    bench_argv, tmp_path: Path, capsys
) -> None:
    out, flag = tmp_path / "bench", tmp_path / "paused"
    # renames of a fresh bench: p0's source, p0's edit (then its row), p1's source, ...
    holder = paused_driver(bench_argv, 3, flag)
    assert flag.exists(), holder.stderr.read()[-2000:] if holder.stderr else ""
    started = time.perf_counter()
    assert main(bench_argv) == 2  # a second writer while the first holds the folder
    assert time.perf_counter() - started < 5  # at once: no model loaded
    assert f"in use by pid {holder.pid}" in capsys.readouterr().err
    holder.kill()  # SIGKILL while p1's source is a written, not yet renamed, temporary
    assert holder.wait(timeout=60) == -9

    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*.png")}
    assert any(p.name.startswith(".") for p in before) and (out / LOCK_NAME).exists()
    with pytest.warns(UserWarning, match=f"pid {holder.pid}"):  # the dead holder's lock
        assert main(bench_argv) == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*.png")}
    assert not any(p.name.startswith(".") for p in after)  # stale temporary removed
    finished = out / "images" / "pnp" / "p0_0.png"
    assert after[finished] == before[finished]  # finished before the kill: not rewritten
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["item"] for r in rows) == ["p0", "p1", "p2"]  # no duplicate rows
    assert not (out / LOCK_NAME).exists()
