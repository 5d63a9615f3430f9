"""No network: hub models fail (or fall back) at once, naming the model, why and what to do.

Nothing here touches the network: offline is simulated by ``HF_HUB_OFFLINE`` or by a hub
endpoint on a closed local port.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
from PIL import Image
from safetensors.torch import save_file

from pnpsam.cli import main
from pnpsam.masks import MaskConfig, MaskMaker, SamUnavailableWarning
from pnpsam.models.hub import unavailable

SECONDS = 3.0  # at once: the hub's own retries took ~22 s


@pytest.fixture(params=["env", "unreachable"])
def offline(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.param == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # nothing listens on port 9 of this machine: the connection is refused at once
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def test_click_falls_back_to_grabcut_at_once(offline: None) -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[12:36, 16:48] = (220, 40, 40)
    started = time.perf_counter()
    with pytest.warns(SamUnavailableWarning, match="facebook/sam-vit-base.*offline"):
        result = MaskMaker().make(image, MaskConfig(points=[(32, 24)]))
    assert time.perf_counter() - started < SECONDS
    assert result is not None and result.method == "grabcut" and result.mask[24, 32] == 1.0


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--subject", "the cat"], ["'CIDAS/clipseg-rd64-refined'", "--text-model", "--mask"]),
        (["--point", "5,5", "--no-grabcut-fallback"], ["SAM 'facebook/sam-vit-base'", "--mask"]),
        (["--model", "someone/sd-model"], ["'someone/sd-model'", "local diffusers folder"]),
    ],
)
def test_edit_fails_at_once_naming_model_why_and_what_to_do(
    offline: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    named: list[str],
) -> None:
    Image.new("RGB", (40, 32)).save(tmp_path / "in.png")
    args = ["edit", str(tmp_path / "in.png"), "--prompt", "a dog", "--out", str(tmp_path)]
    started = time.perf_counter()
    assert main([*args, "--model", str(tmp_path / "no-model"), *flags]) == 2
    assert time.perf_counter() - started < SECONDS
    err = capsys.readouterr().err
    assert "offline" in err and "not in the local hub cache" in err and err.count("\n") == 1
    for text in named:
        assert text in err


def test_bench_scoring_models_fail_before_the_editor_loads(
    offline: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (40, 32)).save(tmp_path / "in.png")
    record = {"id": "a", "image": "in.png", "target_prompt": "a dog"}
    (tmp_path / "m.jsonl").write_text(json.dumps(record) + "\n")
    args = ["bench", "--dataset", str(tmp_path / "m.jsonl"), "--out", str(tmp_path / "o")]
    started = time.perf_counter()
    assert main([*args, "--model", str(tmp_path / "no-model")]) == 2
    assert time.perf_counter() - started < SECONDS
    err = capsys.readouterr().err
    assert "'facebook/dino-vitb8'" in err and "offline" in err and "--no-metrics" in err


def test_random_safetensors_is_not_a_stable_diffusion_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save_file({"encoder.weight": torch.zeros(2, 2)}, tmp_path / "weights.safetensors")
    Image.new("RGB", (40, 32)).save(tmp_path / "in.png")
    args = ["edit", str(tmp_path / "in.png"), "--prompt", "a dog", "--out", str(tmp_path)]
    assert main([*args, "--model", str(tmp_path / "weights.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "is not a Stable Diffusion checkpoint" in err and "encoder.weight" in err
    assert "--single-file-config" in err


@pytest.mark.parametrize(
    ("cause", "why"),
    [
        (GatedRepoError, "gated (accept its licence"),
        (RepositoryNotFoundError, "no such repository or revision"),
        (LocalEntryNotFoundError, "offline, and it is not in the local hub cache"),
    ],
)
def test_load_failures_say_why(cause: type[Exception], why: str) -> None:
    error = OSError("401 Client Error: a long hub message\nwith a second line")
    error.__cause__ = cause.__new__(cause)  # the hub's errors want a live HTTP response
    message = str(unavailable("org/model", "SAM", "give a local folder", error))
    assert message.startswith("cannot load SAM 'org/model': ") and why in message
    assert message.endswith("; give a local folder")
