"""The thread policy: threads from the free cores, the user's settings kept, applied by the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pnpsam.cli import main
from pnpsam.threads import apply_thread_policy, plan_threads, usable_cores


def loadavg(tmp_path: Path, running: int) -> Path:
    path = tmp_path / "loadavg"
    path.write_text(f"3.10 2.50 1.20 {running}/812 4242\n")
    return path


def test_threads_follow_the_free_cores(tmp_path: Path) -> None:
    cores = usable_cores()
    idle = plan_threads({}, loadavg(tmp_path, 1))  # only the reading process runs
    assert idle.threads == cores and f"{cores} usable cores" in idle.reason
    busy = plan_threads({}, loadavg(tmp_path, 1 + cores))  # every core taken by others
    assert busy.threads == 1
    if cores >= 2:
        assert plan_threads({}, loadavg(tmp_path, cores)).threads == 1
    assert plan_threads({}, tmp_path / "missing").threads in range(1, cores + 1)  # load average


def test_the_users_settings_win(tmp_path: Path) -> None:
    crowded = loadavg(tmp_path, 50)
    assert plan_threads({"PNPSAM_THREADS": "3"}, crowded).threads == 3
    assert plan_threads({"PNPSAM_THREADS": "torch"}, crowded).threads is None
    kept = plan_threads({"OMP_NUM_THREADS": "4"}, crowded)
    assert kept.threads is None and "OMP_NUM_THREADS=4" in kept.reason
    with pytest.raises(ValueError, match="PNPSAM_THREADS must be"):
        plan_threads({"PNPSAM_THREADS": "0"})


def test_apply_sets_torch_and_passive_waiting() -> None:
    before = torch.get_num_threads()
    env: dict[str, str] = {"PNPSAM_THREADS": "1"}
    try:
        plan = apply_thread_policy(env)
        assert plan.threads == 1 == torch.get_num_threads()
        assert "OMP_WAIT_POLICY" not in env  # torch is loaded: too late for OpenMP to read it
    finally:
        torch.set_num_threads(before)


def test_every_command_applies_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PNPSAM_THREADS", "many")
    assert main(["demo", "--pairs", "0"]) == 2
    assert "PNPSAM_THREADS must be 'auto', 'torch' or a thread count" in capsys.readouterr().err


def test_a_replay_at_another_thread_count_is_noted_and_the_same_count_is_not() -> None:
    from pnpsam.threads import replay_thread_note

    note = replay_thread_note(2, 1)
    assert note is not None and "2 torch thread(s)" in note and "PNPSAM_THREADS=2" in note
    assert replay_thread_note(2, 2) is None
    assert replay_thread_note(None, 1) is None  # records made before the field
    assert replay_thread_note(True, 1) is None  # not a count
