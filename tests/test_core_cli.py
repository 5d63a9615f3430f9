"""The command line end to end on a local model folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from pnpsam.cli import build_parser, main

FAST = ["--size", "32", "--steps", "4", "--inversion-steps", "4", "--device", "cpu", "--quiet"]


@pytest.fixture()
def cat_file(tmp_path: Path, photo: Image.Image) -> Path:
    path = tmp_path / "astronaut.jpg"
    photo.resize((96, 64)).save(path)
    return path


def test_edit_writes_pngs_and_a_record_that_reproduces_them(
    tiny_model_dir: Path, cat_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [
        "edit",
        str(cat_file),
        "--prompt",
        "a red robot",
        "--prompt",
        "a blue dog",
        "--out",
        str(out),
    ]
    assert main([*args, "--model", str(tiny_model_dir), *FAST, "--pnp-f-t", "0.5"]) == 0
    record = json.loads((out / "astronaut.json").read_text())
    assert record["outputs"] == ["astronaut_00_a-red-robot.png", "astronaut_01_a-blue-dog.png"]
    assert record["config"]["pnp"]["pnp_f_t"] == 0.5
    assert record["config"]["preprocess"]["size"] == 32
    assert record["unet_evaluations"] == 4 + 2 + 2 * 2 * 4
    assert set(record["versions"]) >= {"torch", "diffusers", "transformers"}
    first = Image.open(out / record["outputs"][0])
    assert first.size == (48, 32)

    assert record["torch_threads"] == torch.get_num_threads()

    # replayed from a record that claims another thread count: the same bytes here (the count
    # is really the same) and a note that on another count the last bits may differ
    claimed = dict(record, torch_threads=record["torch_threads"] + 1)
    (tmp_path / "claimed.json").write_text(json.dumps(claimed))
    again = tmp_path / "again"
    claimed_file = str(tmp_path / "claimed.json")
    code = main(["edit", "--config", claimed_file, "--out", str(again), "--quiet"])
    assert code == 0
    note = capsys.readouterr().err
    assert f"made with {record['torch_threads'] + 1} torch thread(s)" in note, note
    for name in record["outputs"]:
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_existing_outputs_are_never_overwritten(
    tiny_model_dir: Path, cat_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "astronaut_00_a-red-robot.png"
    keep.write_bytes(b"precious")
    code = main(
        [
            "edit",
            str(cat_file),
            "--prompt",
            "a red robot",
            "--out",
            str(out),
            "--model",
            str(tiny_model_dir),
            *FAST,
        ]
    )
    assert code == 2
    assert "exists" in capsys.readouterr().err
    assert keep.read_bytes() == b"precious"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "0"], "steps"),
        (["--pnp-f-t", "1.2"], "pnp_f_t"),
        (["--blend-alpha", "-1"], "blend_alpha"),
        (["--model", "/nonexistent/model"], "/nonexistent/model"),
        (["--residual-blocks", "40"], "residual block 40"),
    ],
)
def test_bad_flags_exit_non_zero_naming_the_value(
    tiny_model_dir, cat_file, tmp_path, capsys, extra, message
) -> None:
    out = tmp_path / "out"
    argv = [
        "edit",
        str(cat_file),
        "--prompt",
        "x",
        "--out",
        str(out),
        "--model",
        str(tiny_model_dir),
        *FAST,
        *extra,
    ]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.glob("*.png"))


def test_missing_image_and_prompt_are_named(tmp_path, capsys) -> None:
    assert main(["edit", str(tmp_path / "none.jpg"), "--prompt", "x", "--out", str(tmp_path)]) == 2
    assert "none.jpg" in capsys.readouterr().err
    assert main(["edit", str(tmp_path / "a.jpg"), "--out", str(tmp_path)]) == 2
    assert "--prompt" in capsys.readouterr().err


def test_yaml_config_and_flags_override(tmp_path: Path) -> None:
    from pnpsam.cli.edit import resolve_run

    config = tmp_path / "run.yaml"
    config.write_text("pnp:\n  guidance: 5.0\n  steps: 20\ninversion:\n  steps: 20\n")
    args = build_parser().parse_args(
        ["edit", "img.png", "--prompt", "p", "--config", str(config), "--steps", "10"]
    )
    cfg, image, prompts, _ = resolve_run(args)
    assert (cfg.pnp.guidance, cfg.pnp.steps, cfg.inversion.steps) == (5.0, 10, 20)
    assert (image, prompts) == ("img.png", ["p"])


def test_help_explains_every_flag(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = capsys.readouterr().out
    for flag in [
        "--model",
        "--size",
        "--steps",
        "--inversion-steps",
        "--guidance",
        "--negative-prompt",
        "--seed",
        "--pnp-f-t",
        "--pnp-attn-t",
        "--source",
        "--start",
        "--injection",
        "--blend-alpha",
        "--device",
        "--dtype",
        "--config",
    ]:
        assert flag in text


def test_cli_import_prints_no_torchvision_fallback_notice() -> None:
    """Without torchvision (by design) transformers would print a fallback notice per run."""
    code = "import pnpsam.cli, pnpsam.masks.text; from transformers import CLIPImageProcessor"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "requires torchvision" not in done.stderr + done.stdout


def test_flag_choices_are_the_config_literals(capsys) -> None:
    """Every flag of a field with a Literal type offers exactly those values, and only those."""
    from pnpsam.config import EditConfig, allowed_values
    from pnpsam.options import OPTIONS

    parser = build_parser()
    edit = parser._subparsers._group_actions[0].choices["edit"]  # type: ignore[union-attr]
    actions = {a.option_strings[0]: a for a in edit._actions if a.option_strings}
    with_choices = {o.flag: o for o in OPTIONS if o.choices}
    assert actions["--dtype"].choices == ("fp32", "fp16", "bf16")
    assert actions["--restore"].choices == ("none", "global", "masked", "luminance")
    assert {actions[f].choices for f in with_choices} == {
        allowed_values(o.section, o.field) for o in with_choices.values()
    }
    literal_fields = {
        (section, name)
        for section, value in EditConfig().to_dict().items()
        for name in value
        if allowed_values(section, name)
    }
    options = {(o.section, o.field) for o in with_choices.values()}
    assert literal_fields == options  # every fixed-choice field has a flag with its choices
    assert allowed_values("preprocess", "size") is None
    with pytest.raises(ValueError, match="unknown field 'sizes'"):
        allowed_values("preprocess", "sizes")
    with pytest.raises(SystemExit):
        parser.parse_args(["edit", "x.png", "--prompt", "p", "--background", "smudge"])
    assert "invalid choice: 'smudge'" in capsys.readouterr().err


def test_errors_name_config_fields_and_the_cli_names_flags(
    editor, small_config, cat_file, tmp_path, capsys, monkeypatch
) -> None:
    """Out of memory on the last resort: the library names fields, the command line flags."""
    import torch

    from pnpsam.api import OutOfMemoryError, PnPEditor
    from pnpsam.core import pipeline

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("simulated: a CPU cannot run out of accelerator memory")

    monkeypatch.setattr(pipeline, "pnp_sample", out_of_memory)
    small_config.inversion.steps = small_config.pnp.steps = 2
    with pytest.raises(OutOfMemoryError) as raised:
        editor.edit(Image.open(cat_file), ["x"], small_config)
    assert "--" not in str(raised.value) and "model.dtype" in str(raised.value)

    def fail(*args, **kwargs):  # the same error, without loading a second model
        raise raised.value

    monkeypatch.setattr(PnPEditor, "from_pretrained", fail)
    argv = ["edit", str(cat_file), "--prompt", "x", "--out", str(tmp_path / "out"), *FAST]
    assert main(argv) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("pnpsam edit: error: out of accelerator memory")
    assert last.endswith("try --dtype fp16, --cpu-offload or a smaller --size")
