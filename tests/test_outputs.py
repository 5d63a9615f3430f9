"""Output folders without a model: the lock, stale temporaries, and sets whole or absent."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from pnpsam.outputs import (
    LOCK_NAME,
    OutputExistsError,
    OutputFolder,
    OutputLock,
    OutputLockedError,
    OutputSet,
    OutputWriteError,
    StaleLockWarning,
    append_lines,
    remove_stale_temporaries,
)


def _lock_file(folder: Path, pid: int, host: str | None = None) -> None:
    holder = {"pid": pid, "host": host or socket.gethostname(), "command": "pnpsam edit"}
    (folder / LOCK_NAME).write_text(json.dumps({**holder, "started": "earlier"}))


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        _lock_file(tmp_path, sleeper.pid)
        with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid} on host"):
            OutputLock(tmp_path, "pnpsam bench").acquire()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the holder is gone (killed, reaped): its lock is taken over with a warning
    with pytest.warns(StaleLockWarning, match=f"pid {sleeper.pid}"), OutputFolder(tmp_path, "x"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_another_host_or_this_process_is_respected(tmp_path: Path) -> None:
    _lock_file(tmp_path, 1, host="elsewhere")
    with pytest.raises(OutputLockedError, match="host elsewhere"):
        OutputLock(tmp_path, "pnpsam edit").acquire()
    (tmp_path / LOCK_NAME).unlink()
    with OutputLock(tmp_path, "first"), pytest.raises(OutputLockedError, match=str(os.getpid())):
        OutputLock(tmp_path, "second").acquire()


def test_stale_temporaries_go_and_nothing_else(tmp_path: Path) -> None:
    nested = tmp_path / "images" / "pnp"
    nested.mkdir(parents=True)
    stale = [tmp_path / ".a_00_x.png.k2j_9xq1.png", nested / ".item_0.png.abcdefgh.png"]
    kept = [tmp_path / "a_00_x.png", tmp_path / ".hidden", tmp_path / ".a.png.short.png"]
    for path in stale + kept:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert all(path.exists() for path in kept)


def test_unwritable_or_full_folder_is_refused_before_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputWriteError, match="not writable"):
        OutputFolder(blocker / "out", "pnpsam edit").__enter__()
    with pytest.raises(OutputWriteError, match="MiB free"):
        OutputFolder(tmp_path / "new" / "out", "pnpsam edit", need_bytes=1 << 60).__enter__()
    assert not (tmp_path / "new").exists()  # made for the check, removed again


def _write_set(folder: Path, names: list[str], settings: str, **kwargs) -> OutputSet:
    outputs = OutputSet(folder, "run.json", names, settings, **kwargs)
    if outputs.complete:
        return outputs
    outputs.save_draft({"what": settings})
    for name in outputs.todo:
        outputs.write(name, f"{settings}:{name}".encode())
    outputs.finish()
    return outputs


class Crash(BaseException):
    """Stands for the process dying at a file operation."""


@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("moment", range(1, 7))
def test_a_set_interrupted_at_any_rename_resumes_without_rewriting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: int, after: bool
) -> None:
    """Renames: journal, a, b, c, record; interrupted just before or just after each."""
    names = ["a.png", "b.png", "c.png"]
    real = os.replace
    calls = []

    def replace(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == moment and not after:
            raise Crash
        real(src, dst)
        if len(calls) == moment and after:
            raise Crash

    monkeypatch.setattr(os, "replace", replace)
    with contextlib.suppress(Crash):
        _write_set(tmp_path, names, "s1")
    monkeypatch.setattr(os, "replace", real)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.glob("*.png")}
    record = tmp_path / "run.json"
    if record.exists():  # the crash came after the record: the set is whole
        assert set(json.loads(record.read_text())["files"]) == set(names)
        assert OutputSet(tmp_path, "run.json", names, "s1").complete  # and the journal goes
        assert not (tmp_path / "run.json.partial").exists()
    resumed = _write_set(tmp_path, names, "s1")
    done = json.loads(record.read_text())
    assert done["settings_sha256"] == "s1" and set(done["files"]) == set(names)
    assert sorted(resumed.kept) == sorted(before)  # every finished file verified and kept
    for name, (mtime, data) in before.items():
        assert (tmp_path / name).stat().st_mtime_ns == mtime
        assert (tmp_path / name).read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "run.json"]


def test_finished_sets_refused_unless_overwrite_which_removes_leftovers(tmp_path: Path) -> None:
    _write_set(tmp_path, ["a.png", "b.png", "m.png"], "s1")
    again = OutputSet(tmp_path, "run.json", ["a.png", "b.png", "m.png"], "s1")
    assert again.complete and again.todo == []
    with pytest.raises(OutputExistsError, match="other settings"):
        OutputSet(tmp_path, "run.json", ["a.png"], "s2")
    _write_set(tmp_path, ["a.png"], "s2", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "run.json"]
    assert (tmp_path / "a.png").read_bytes() == b"s2:a.png"


def test_foreign_files_and_other_unfinished_sets_are_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match=r"a\.png"):
        OutputSet(tmp_path, "run.json", ["a.png"], "s1")
    assert not (tmp_path / "run.json.partial").exists()
    (tmp_path / "a.png").unlink()
    OutputSet(tmp_path, "run.json", ["a.png"], "s1").write("a.png", b"half")
    with pytest.raises(OutputExistsError, match="unfinished set made with other settings"):
        OutputSet(tmp_path, "run.json", ["a.png"], "s2")
    assert (tmp_path / "a.png").read_bytes() == b"half"


def test_a_changed_or_deleted_file_of_a_finished_set_is_redone(tmp_path: Path) -> None:
    _write_set(tmp_path, ["a.png", "b.png"], "s1")
    (tmp_path / "a.png").write_bytes(b"tampered")
    (tmp_path / "b.png").unlink()
    redo = OutputSet(tmp_path, "run.json", ["a.png", "b.png"], "s1")
    assert not redo.complete and sorted(redo.todo) == ["a.png", "b.png"]
    redo.write("a.png", b"s1:a.png")
    assert not (tmp_path / "run.json").exists()  # no record beside a set it does not describe
    assert redo.draft == {"what": "s1", "settings_sha256": "s1"}


def test_disk_full_while_appending_leaves_readable_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rows.jsonl"
    append_lines(path, ['{"n": 1}'])
    real = os.write

    def full(fd: int, data: bytes) -> int:
        written = real(fd, bytes(data[:3]))  # a few bytes land, then the disk is full
        monkeypatch.setattr(os, "write", lambda *_: _raise(errno.ENOSPC))
        return written

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OutputWriteError, match="No space left on device; free some space"):
        append_lines(path, ['{"n": 2}'])
    monkeypatch.setattr(os, "write", real)
    append_lines(path, ['{"n": 3}'])
    lines = path.read_text().splitlines()
    assert lines[0] == '{"n": 1}' and lines[-1] == '{"n": 3}'  # the torn line stays alone


def _raise(code: int) -> int:
    raise OSError(code, os.strerror(code))


def test_one_fingerprint_keeps_the_keys_written_before() -> None:
    """edit's set digests, bench's row keys and the inversion store's cache names were three
    sha256-of-JSON functions; they are one now and every key on disk still matches."""
    from pnpsam.config import fingerprint

    edit = ["ab12", ["a cat", "a dog"], {"pnp": {"steps": 50, "x": (1, 2)}}]  # tuples as lists
    assert fingerprint(edit) == "c30b11ded93afb8f42e128e1db4664bf6db94f36ad9358ab20a0efd42a44a5c2"
    row = {"method": "pnp", "params": {}, "config": {"b": 1, "a": [1.5]}}
    assert fingerprint(row, 16) == "f7095e573e854925"  # bench rows.jsonl, batch index
    store = "1d1fe6a102586845f8b39fdc517650fad606d65e86ad7f9aaab78844f2f542b2"
    assert fingerprint(row, compact=True) == store  # inversion cache file names
    assert fingerprint({**row, "config": {"b": 1, "a": [1.25]}}, 16) != fingerprint(row, 16)
