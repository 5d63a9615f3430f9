"""Bad input through the API and the command line: refused by name, before any work."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.cli import main
from pnpsam.config import ConfigError, EditConfig, load_yaml

NO_MODEL = ["--model", "/missing/model", "--device", "cpu", "--quiet"]


@pytest.fixture()
def picture(tmp_path: Path, photo: Image.Image) -> Path:
    path = tmp_path / "astro.png"
    photo.resize((48, 32)).save(path)
    return path


def cli_error(argv: list[str], capsys) -> str:
    """Run the command; it must exit 2 with one error line and no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_config_types_are_strict(tmp_path: Path, picture: Path, capsys) -> None:
    cases = {
        "pnp:\n  steps: true\n": "steps must be an integer; got True",
        "pnp:\n  guidance: .inf\n": "guidance must be a finite number; got inf",
        "preprocess:\n  size: 32.0\n": "size must be an integer or null",
        "mask:\n  points: [[1, 2, 3]]\n": "must be a list of (2 numbers); got ((1, 2, 3),)",
        "prompts: [[a, [b]]]\n": "prompts must be strings; got list",
        "image: [1]\nprompts: [x]\n": "image in the config file must be a path",
    }
    for text, message in cases.items():
        config = tmp_path / "run.yaml"
        config.write_text(text)
        argv = ["edit", str(picture), "--config", str(config), "--out", str(tmp_path / "o")]
        if "prompts" not in text:
            argv += ["--prompt", "x"]
        if "image:" in text:
            argv.remove(str(picture))
        assert message in cli_error([*argv, *NO_MODEL], capsys)
    assert not (tmp_path / "o").exists()


def test_guidance_inf_and_nan_refused(tmp_path: Path, picture: Path, capsys) -> None:
    for value in ("inf", "nan", "-inf"):
        argv = ["edit", str(picture), "--prompt", "x", f"--guidance={value}"]
        line = cli_error([*argv, "--out", str(tmp_path / "o"), *NO_MODEL], capsys)
        assert "guidance" in line and value.lstrip("-") in line
    assert not (tmp_path / "o").exists()


def test_yaml_aliases_refused_at_once(tmp_path: Path, picture: Path, capsys) -> None:
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [
        f"{chr(98 + k)}: &{chr(98 + k)} [{', '.join(['*' + chr(97 + k)] * 9)}]" for k in range(8)
    ]
    config = tmp_path / "laughs.yaml"
    config.write_text("\n".join(laughs) + "\n")
    started = time.perf_counter()
    argv = ["edit", str(picture), "--prompt", "x", "--config", str(config), "--out", "o"]
    assert "anchors/aliases" in cli_error([*argv, *NO_MODEL], capsys)
    assert time.perf_counter() - started < 2
    with pytest.raises(ConfigError, match="anchors"):
        load_yaml("&a [*a]", "value")  # a list that contains itself


def test_mask_file_missing_and_grow_too_large(
    tmp_path: Path, picture: Path, tiny_model_dir: Path, capsys
) -> None:
    argv = ["edit", str(picture), "--prompt", "x", "--out", str(tmp_path / "o")]
    line = cli_error([*argv, "--mask", str(tmp_path / "missing.png"), *NO_MODEL], capsys)
    assert "missing.png" in line and "does not exist" in line
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((32, 48), 255, np.uint8) * np.eye(32, 48, dtype=np.uint8)).save(mask)
    model = ["--model", str(tiny_model_dir), "--size", "32", "--steps", "2", "--device", "cpu"]
    started = time.perf_counter()
    line = cli_error([*argv, "--mask", str(mask), "--mask-grow", "100000", *model], capsys)
    assert "100000" in line and "at most 48" in line
    assert time.perf_counter() - started < 30  # no 40 GB kernel
    line = cli_error([*argv, "--mask", str(mask), "--mask-feather", "1e9", *model], capsys)
    assert "1000000000" in line
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_api_inputs_checked_like_cli_inputs(editor: PnPEditor, photo: Image.Image) -> None:
    cfg = editor.default_config()
    cfg.preprocess.size, cfg.pnp.steps = 32, 2
    small = photo.resize((32, 32))
    with pytest.raises(ValueError, match="got int 5"):
        editor.edit(small, 5, cfg)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"got list \['b'\]"):
        editor.edit(small, ["a", ["b"]], cfg)  # type: ignore[list-item]
    with pytest.raises(ConfigError, match=r"pnp\.guidance must be a finite number; got inf"):
        editor.edit(small, "x", cfg, guidance=float("inf"))
    with pytest.raises(
        ConfigError, match=r"unknown keyword\(s\) \['guidanse'\]; valid: .*'guidance'"
    ):
        editor.edit(small, "x", cfg, guidanse=3.0)
    with pytest.raises(ConfigError, match=r"pnp\.steps must be an integer; got True"):
        editor.edit(
            small, "x", dataclasses.replace(cfg, pnp=dataclasses.replace(cfg.pnp, steps=True))
        )
    for array in (np.zeros((32, 32, 5), np.uint8), np.zeros((32, 32, 3), np.float32)):
        with pytest.raises(ValueError, match=r"HxW, HxWx3 or HxWx4 uint8; got .*\(32, 32, "):
            editor.edit(array, "x", cfg)
    with pytest.raises(ValueError, match="got int"):
        editor.edit(7, "x", cfg)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown keyword\(s\) \['dtyp'\]; valid: .*'dtype'"):
        PnPEditor.from_pretrained("any/model", dtyp="fp16")
    with pytest.raises(ConfigError, match=r"model\.dtype must be one of"):
        PnPEditor.from_pretrained("any/model", dtype=16)


def test_points_given_with_an_inversion_are_not_ignored(
    editor: PnPEditor, photo: Image.Image
) -> None:
    cfg = editor.default_config()
    cfg.preprocess.size, cfg.pnp.steps = 32, 2
    small = photo.resize((32, 32))
    plain = editor.invert(small, cfg)
    clicked = EditConfig.from_dict(cfg.to_dict())
    clicked.mask.points = [(10.0, 12.0)]
    with pytest.raises(ConfigError, match=r"\['points'\].*editor.invert"):
        editor.edit(plain, "x", clicked)
    with pytest.raises(ConfigError, match=r"\['array'\]"):
        editor.edit(plain, "x", cfg, mask=np.ones((32, 32), np.float32))
    assert len(editor.edit(plain, "x", cfg).images) == 1  # the same (no) sources: fine
