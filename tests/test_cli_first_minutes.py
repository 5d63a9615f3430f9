"""A newcomer's first minutes: fast help that reads right, the toy model with no flags, progress."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.cli import build_parser, main
from pnpsam.config import TOY_MODEL_DIR, EditConfig, ModelConfig
from pnpsam.core.injection import InjectionSiteError
from pnpsam.masks.config import DEFAULT_SAM_MODEL
from pnpsam.options import OPTIONS, resolve_config
from pnpsam.toyworld.pairs import TOY_EDIT

TOY_FLAGS = ["--steps", "2", "--inversion-steps", "2", "--device", "cpu"]


def test_cli_imports_no_torch() -> None:
    code = (
        "import sys, pnpsam.cli.main; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'cv2', 'scipy') "
        "if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]"


def help_of(command: str) -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return " ".join(subparsers.choices[command].format_help().split())


@pytest.mark.parametrize("command", ["edit", "bench", "demo"])
def test_help_prints_each_default_once_and_switches_read_right(command: str) -> None:
    text = help_of(command)
    assert "(default: None)" not in text
    for chunk in text.split("--")[1:]:
        assert chunk.count("(default") <= 1, chunk
    if command == "edit":
        assert "prompts per UNet batch (default: all) --point" in text
        assert (
            "instead of falling back (GrabCut for clicks, CLIPSeg's coarse map for text) --" in text
        )
        assert "(default: 7.5, or the model's own)" in text


def test_negative_click_is_a_value_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (40, 32)).save(tmp_path / "in.png")
    args = ["edit", str(tmp_path / "in.png"), "--prompt", "a cat", "--point", "-5,-5"]
    assert main([*args, "--model", str(tmp_path / "no-model"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "point (x=-5.0, y=-5.0) lies outside the 40x32 image" in err


def test_model_settings_sit_under_explicit_ones(tmp_path: Path) -> None:
    parser = build_parser()
    image = str(tmp_path / "x.png")
    toy, _ = resolve_config(parser.parse_args(["edit", image, "--model", "toy"]), OPTIONS)
    assert toy.pnp.attention_blocks == tuple(TOY_EDIT["pnp"]["attention_blocks"])
    assert (toy.pnp.guidance, toy.pnp.negative_prompt) == (4.0, "")
    given = ["edit", image, "--model", str(TOY_MODEL_DIR), "--guidance", "7.5"]
    explicit, _ = resolve_config(parser.parse_args([*given, "--attention-blocks", "3"]), OPTIONS)
    assert (explicit.pnp.guidance, explicit.pnp.attention_blocks) == (7.5, (3,))
    assert explicit.pnp.residual_blocks == (4,)  # the toy's, not the paper's (4,) by chance
    plain, _ = resolve_config(parser.parse_args(["edit", image, "--model", "a/b"]), OPTIONS)
    assert plain.pnp == EditConfig().pnp
    # clicks: the toy model's own SAM by default (its pnpsam_defaults.json), any SAM on request
    assert toy.mask.sam_model == "toy" and plain.mask.sam_model == DEFAULT_SAM_MODEL
    named = ["edit", image, "--model", "toy", "--sam-model", "facebook/sam-vit-base"]
    assert resolve_config(parser.parse_args(named), OPTIONS)[0].mask.sam_model == named[-1]


def test_toy_model_edits_with_no_flags_and_shows_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "red.png")
    out = tmp_path / "out"
    args = ["edit", str(tmp_path / "red.png"), "--prompt", "a blue square", "--out", str(out)]
    assert main([*args, "--model", "toy", *TOY_FLAGS]) == 0
    record = json.loads((out / "red.json").read_text())
    assert record["config"]["pnp"]["attention_blocks"] == [2, 3, 4, 5, 6, 7]
    photo = TOY_MODEL_DIR.parent / "photos" / "red-circle-on-grass.png"
    clicked = ["edit", str(photo), "--prompt", "a blue circle on grass", "--point", "30,34"]
    assert main([*clicked, "--out", str(out), "--model", "toy", *TOY_FLAGS]) == 0
    subject = json.loads((out / "red-circle-on-grass.json").read_text())["subject_mask"]
    assert subject["method"] == "sam" and subject["sam_model"] == "toy"  # not GrabCut
    assert record["model"]["resolved_path"] == str(TOY_MODEL_DIR)
    err = capsys.readouterr().err  # not a terminal: the bars show anyway, unless --quiet
    assert "invert: 100%" in err and "edit: 100%" in err and "2/2" in err

    editor = PnPEditor.from_pretrained(ModelConfig(model="toy", device="cpu"))
    assert editor.default_config().pnp.residual_blocks == (4,)
    with pytest.raises(InjectionSiteError, match=r"block 8 does not exist.*recommends"):
        editor.resolve(EditConfig())  # the paper's blocks, refused before any work

    demo = ["demo", "--pairs", "1", "--steps", "2", "--methods", "pnp", "--device", "cpu"]
    assert main([*demo, "--model", "toy", "--out", str(tmp_path / "demo")]) == 0
    err = capsys.readouterr().err
    assert "demo: 100%" in err and "1/1" in err and "<00:00" in err  # a bar with its ETA


def test_quiet_hides_every_bar_and_warnings_are_one_line(tmp_path: Path) -> None:
    """A user's run with ``--quiet``: no bar at all (not even the libraries' loading bars) and a
    warning as one ``pnpsam edit: warning: ...`` line, not Python's ``path:line: Category``
    form. Without ``--quiet`` the bars are there. A separate process: loading bars and
    warning formatting are process-wide."""
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "red.png")
    entry = "import sys; from pnpsam.cli import main; sys.exit(main())"  # as the pnpsam script
    base = [sys.executable, "-c", entry, "edit", str(tmp_path / "red.png")]
    base += ["--model", "toy", "--prompt", "a blue square", "--point", "32,32", *TOY_FLAGS]
    # a real SAM named (the toy's own is the default), unavailable offline: the GrabCut warning
    base += ["--sam-model", "facebook/sam-vit-base"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    quiet = subprocess.run(
        [*base, "--out", str(tmp_path / "q"), "--quiet"], capture_output=True, text=True, env=env
    )
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stderr.splitlines()
    assert "%|" not in quiet.stderr and "Loading" not in quiet.stderr, quiet.stderr
    warned = [line for line in lines if "GrabCut" in line]
    assert len(warned) == 1 and warned[0].startswith("pnpsam edit: warning: could not load SAM")
    assert "Warning:" not in quiet.stderr and ".py:" not in quiet.stderr
    loud = subprocess.run(
        [*base, "--out", str(tmp_path / "l")], capture_output=True, text=True, env=env
    )
    assert loud.returncode == 0 and "Loading" in loud.stderr and "edit: 100%" in loud.stderr
