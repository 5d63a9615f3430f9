"""The app's rules for many users without a server: run caps, Stop, progress, files, limits."""

from __future__ import annotations

import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.app.actions import Caps, dropped_words, parse_prompts, prompt_notes, run_edit
from pnpsam.app.jobs import STOPPED, Runs, StepWatch, TooManyRuns, Workspace, run_name
from pnpsam.app.session import Session
from pnpsam.config import ConfigError, EditConfig
from pnpsam.core.callbacks import EditStopped


def test_runs_cap_queued_runs_per_session_and_stop_sets_the_running_flags() -> None:
    runs = Runs(cap=2)
    first, second = runs.admit("a"), runs.admit("a")
    with pytest.raises(TooManyRuns, match=r"2 runs queued or running.*\(2\).*press Stop"):
        runs.admit("a")
    runs.admit("b")  # another session has its own count
    with runs.running("a", first) as flag:  # a's first run starts
        assert runs.active("a") == 2 and not flag.is_set()
        assert runs.stop("a") == 1  # Stop: the running run's flag, and the waiting one dropped
        assert flag.is_set()
        assert runs.active("a") == 1  # only the running one, until it returns
    assert runs.active("a") == 0
    with runs.running("a", second) as flag:  # the queue started the dropped run all the same
        assert flag.is_set()
    third = runs.admit("a")  # the cap counts again from zero; a later run is not stopped
    with runs.running("a", third) as flag:
        assert not flag.is_set()
    runs.end("b")
    assert runs.active("b") == 0


def test_step_watch_reports_steps_and_stops_within_one_step() -> None:
    flag = threading.Event()
    reported: list[tuple[int, int, str]] = []
    watch = StepWatch("sampling", 5, flag, lambda d, t, s: reported.append((d, t, s)))
    watch(0, 999, {})
    watch(1, 979, {})
    assert [r[:2] for r in reported] == [(1, 5), (2, 5)]
    assert reported[-1][2].startswith("sampling: step 2/5, ~") and reported[-1][2].endswith("left")
    flag.set()
    with pytest.raises(EditStopped, match=STOPPED):
        watch(2, 959, {})


def test_a_stopped_edit_ends_at_the_next_step_and_keeps_nothing(
    editor: PnPEditor, small_config: EditConfig, tmp_path: Path
) -> None:
    """Stop pressed during step 3 of the sampling: the edit ends after that step (steps 4-10
    never run), no file is written, and the next run of the same editor works."""
    flag = threading.Event()
    seen: list[int] = []

    def press_stop_at_step_3(done: int, total: int, desc: str) -> None:
        seen.append(done)
        if done == 3:
            flag.set()

    image = np.full((32, 32, 3), 120, np.uint8)
    session = Session.with_photo("cat.png", Image.fromarray(image))
    sampling = StepWatch("sampling", 10, flag, press_stop_at_step_3)
    inversion = StepWatch("inversion", 10, threading.Event())
    with pytest.raises(EditStopped) as stopped:
        run_edit(editor, session, ["a dog"], small_config, tmp_path, "x", sampling, inversion)
    assert seen == [1, 2, 3] and stopped.value.step == 3  # the 4th step's check ended it
    assert list(tmp_path.iterdir()) == []
    done = run_edit(editor, session, ["a dog"], small_config, tmp_path / "next", "next")
    assert done.archive.name == "next.zip" and len(done.result.images) == 1
    with zipfile.ZipFile(done.archive) as bundle:  # the photo once, inside the zip only
        assert "cat.png" in bundle.namelist()
    assert not (tmp_path / "next" / "cat.png").exists()


def test_stop_during_the_inversion(
    editor: PnPEditor, small_config: EditConfig, tmp_path: Path
) -> None:
    flag = threading.Event()
    flag.set()
    image = np.full((32, 32, 3), 77, np.uint8)  # not inverted before: the inversion runs
    session = Session(photo=None, image=image)
    with pytest.raises(EditStopped, match="after step 0"):
        run_edit(
            editor, session, ["a dog"], small_config, tmp_path, None, None, StepWatch("i", 10, flag)
        )


def test_caps_name_the_allowed_range_and_the_flag(editor: PnPEditor) -> None:
    cfg = editor.default_config()
    caps = Caps.for_device("cpu", 64)
    assert caps == Caps(size=128, steps=50, prompts=4)
    cfg.preprocess.size = 4096  # within config.LIMITS, above this server's cap
    with pytest.raises(
        ConfigError,
        match=r"preprocess.size must be in \[16, 128\] on this server.*--max-size`\); got 4096",
    ):
        caps.check(cfg)
    cfg.preprocess.size = 64
    cfg.pnp.steps = 200
    with pytest.raises(ConfigError, match=r"pnp.steps must be in \[1, 50\].*--max-steps"):
        caps.check(cfg)
    Caps.for_device("cuda", 64).check(cfg)  # with a GPU: config.LIMITS alone
    with pytest.raises(ConfigError, match=r"prompts must be in \[1, 4\].*--max-prompts`\); got 5"):
        parse_prompts("a\nb\nc\nd\ne", caps.prompts)
    with pytest.raises(ConfigError, match=r"prompts must be in \[1, 64\]; got 65"):
        parse_prompts("\n".join(["a"] * 65))
    with pytest.raises(ConfigError, match=r"guidance must be in \[0.0, 30.0\]; got 1e\+30"):
        EditConfig.from_dict(
            {**cfg.to_dict(), "pnp": {**cfg.to_dict()["pnp"], "guidance": 1e30}}
        ).validate()


def test_dropped_words_are_the_ones_past_the_text_encoders_length(editor: PnPEditor) -> None:
    tokenizer = editor.pipeline.sd.tokenizer
    room = tokenizer.model_max_length - 2
    short = "a red circle on grass"
    assert dropped_words(tokenizer, short) == []
    words = [f"w{i}" for i in range(room + 40)]
    lost = dropped_words(tokenizer, " ".join(words))
    kept = words[: len(words) - len(lost)]
    assert lost == words[len(kept) :] and lost
    ids = tokenizer(" ".join(kept), add_special_tokens=False).input_ids
    assert (
        len(ids)
        <= room
        < len(tokenizer(" ".join([*kept, lost[0]]), add_special_tokens=False).input_ids)
    )
    note = prompt_notes(tokenizer, [short, " ".join(words)])
    assert (
        note.startswith("prompt 2 is longer than the text encoder reads")
        and f"{len(lost)} word(s) dropped" in note
    )


def test_workspace_keeps_each_session_apart_and_deletes_by_age_and_at_the_end(
    tmp_path: Path,
) -> None:
    space = Workspace(tmp_path / "runs", keep_s=60)
    old = space.run_dir("s1", "toy_20260101-000000_abcdef12")
    (old / "out.png").write_bytes(b"x" * 100)
    new = space.run_dir("s1", "toy_20260101-000000_abcdef12")  # same name: a new folder
    assert new != old and new.name.endswith("-2")
    upload = tmp_path / "gradio" / "h" / "toy.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"y" * 10)
    space.adopt("s2", upload)
    space.adopt("s3", upload)  # the same file uploaded by another session
    other = space.run_dir("s2", "run")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    assert space.sweep() == [old]
    assert new.exists() and other.exists()
    space.end("s2")
    assert not other.exists() and upload.exists()  # s3 still uses the upload
    space.end("s3")
    assert not upload.exists() and not upload.parent.exists()
    with pytest.raises(ValueError, match="bad session id"):
        space.run_dir("../x", "run")


def test_run_names_carry_the_photo_stem_time_and_settings_digest() -> None:
    when = time.mktime((2026, 12, 4, 22, 30, 5, 0, 0, -1))
    first = run_name("cat", when, {"steps": 10})
    assert first.startswith("cat_20261204-223005_") and len(first.split("_")[-1]) == 8
    assert run_name("cat", when, {"steps": 10}) == first
    assert run_name("cat", when, {"steps": 20}) != first
