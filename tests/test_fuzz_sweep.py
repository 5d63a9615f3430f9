"""A sweep of generated bad inputs across every front end and the Python API.

For each case: a non-zero exit (command line) or a typed exception (API), a message naming the
bad value, no traceback, and every file that existed before unchanged (bytes and mtime). The
command-line cases run in-process (``pnpsam.cli.main``): most fail before a model loads; the
few that need one use the tiny model at 32 px and 2 steps.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pnpsam.api import PnPEditor
from pnpsam.cli import main
from pnpsam.config import TOY_MODEL_DIR, EditConfig
from pnpsam.outputs import LOCK_NAME, OutputError

TINY = ["--size", "32", "--steps", "2", "--device", "cpu", "--quiet"]


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but holds one row of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 4))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace: good and hostile files, a precious output folder, a held folder."""
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (32, 48, 3), np.uint8)
    Image.fromarray(good).save(root / "good.png")
    (root / "empty.png").write_bytes(b"")
    (root / "noise.png").write_bytes(rng.bytes(2000))
    whole = io.BytesIO()
    Image.fromarray(good).save(whole, format="PNG")
    (root / "truncated.png").write_bytes(whole.getvalue()[:150])
    (root / "text.jpg").write_text("this is not a jpeg")
    Image.new("RGB", (1, 1)).save(root / "dot.png")
    Image.new("RGB", (2000, 20)).save(root / "sliver.png")
    (root / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    (root / "folder.png").mkdir()
    (root / "loop.png").symlink_to(root / "loop.png")
    Image.fromarray(np.full((8, 8), 2.5, np.float32), mode="F").save(root / "hot.tif")
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), np.uint8)).save(root / "photo_mask.png")
    (root / "garbage_mask.png").write_bytes(rng.bytes(500))
    square = np.zeros((32, 48), np.uint8)
    square[8:24, 12:36] = 255
    Image.fromarray(square).save(root / "ok_mask.png")
    configs = {
        "laughs.yaml": "a: &a [lol, lol]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n",
        "bool_steps.yaml": "pnp:\n  steps: true\n",
        "inf.yaml": "pnp:\n  guidance: .inf\n",
        "nested.yaml": "prompts: [[a cat, [a dog]]]\n",
        "list.yaml": "- pnp\n- 3\n",
        "section.yaml": "warp:\n  speed: 9\n",
        "key.yaml": "pnp:\n  guidanse: 3\n",
        "notmap.yaml": "pnp: 5\n",
        "python.yaml": "pnp: !!python/object/apply:os.system ['echo pwned']\n",
        "string_size.yaml": "preprocess:\n  size: '32'\n",
        "blocks.yaml": "pnp:\n  attention_blocks: [4, yes]\n",
        "huge.yaml": "# " + "x" * (1 << 21) + "\n",
    }
    for name, text in configs.items():
        (root / name).write_text(text)
    (root / "binary.yaml").write_bytes(rng.bytes(300) + b"\xff\xfe")
    manifests = {
        "bad_json.jsonl": '{"id": "a", "image": "good.png"\n',
        "no_prompt.jsonl": json.dumps({"id": "a", "image": "good.png"}) + "\n",
        "missing_img.jsonl": json.dumps({"image": "nope.png", "target_prompt": "x"}) + "\n",
        "empty.jsonl": "",
        "nested.jsonl": json.dumps({"image": "good.png", "prompts": [["x"]]}) + "\n",
        "list_line.jsonl": "[1, 2, 3]\n",
        "manifest.txt": "good.png\n",
        "ok.jsonl": json.dumps({"image": "good.png", "target_prompt": "a cat"}) + "\n",
    }
    for name, text in manifests.items():
        (root / name).write_text(text)
    deep = '{"image": "good.png", "prompts": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    (root / "deep.jsonl").write_text(deep)
    (root / "latin1.jsonl").write_bytes(b'{"image": "good.png", "prompts": ["caf\xe9"]}\n')
    typo = {"image": "good.png", "prompts": ["a cat"], "promts": ["a dog"]}
    (root / "typo.jsonl").write_text(json.dumps(typo) + "\n")
    (root / "shared").mkdir()
    outside = {"image": "../good.png", "prompts": ["a cat"]}
    (root / "shared" / "outside.jsonl").write_text(json.dumps(outside) + "\n")
    for seed in (-1, 99999999999999999999999):
        line = {"image": "good.png", "prompts": ["a cat"], "seed": seed}
        (root / f"seed{seed}.jsonl").write_text(json.dumps(line) + "\n")
    index = json.loads((TOY_MODEL_DIR / "model_index.json").read_text())
    hostile = root / "hostile_model"
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        (hostile / part).mkdir(parents=True)
    (hostile / "model_index.json").write_text(json.dumps({**index, "unet": ["os", "system"]}))
    (root / "photos").mkdir()
    Image.fromarray(good).save(root / "photos" / "p.png")
    out = root / "out"
    out.mkdir()
    (out / "precious.png").write_bytes(b"earlier work")
    (out / "good.json").write_text(json.dumps({"settings_sha256": "other", "files": {}}))
    (root / "blocker").write_text("a file, not a folder")
    return root


@pytest.fixture(scope="module")
def held(ws: Path):
    """A folder whose lock a live process holds."""
    sleeper = subprocess.Popen(["sleep", "120"])
    folder = ws / "held"
    folder.mkdir()
    holder = {"pid": sleeper.pid, "host": socket.gethostname(), "command": "pnpsam bench"}
    (folder / LOCK_NAME).write_text(json.dumps(holder))
    yield folder
    sleeper.kill()
    sleeper.wait()


@dataclass
class Cli:
    argv: list[str]
    names: str  # what the message must contain
    needs_model: bool = False


def cli_cases() -> dict[str, Cli]:
    """argv with {ws} for the workspace and {model} for the tiny model; out is {ws}/out."""
    edit = ["edit", "{ws}/good.png", "--prompt", "a cat", "--out", "{ws}/out"]
    model = ["--model", "{model}", *TINY]
    cases: dict[str, Cli] = {}
    for name, names in {
        "empty.png": "empty.png",
        "noise.png": "noise.png",
        "truncated.png": "truncated.png",
        "text.jpg": "text.jpg",
        "dot.png": "1x1",
        "sliver.png": "2000x20",
        "bomb.png": "bomb.png",
        "folder.png": "folder.png",
        "loop.png": "loop.png",
        "missing.png": "missing.png",
        "hot.tif": "hot.tif",
    }.items():
        argv = ["edit", f"{{ws}}/{name}", "--prompt", "x", "--out", "{ws}/out", *model]
        cases[f"edit image {name}"] = Cli(argv, names)
    for flags, names in {
        ("--steps", "0"): "steps",
        ("--steps", "-5"): "-5",
        ("--steps", "1e9"): "1e9",
        ("--guidance=inf",): "inf",
        ("--guidance=nan",): "nan",
        ("--guidance=-inf",): "-inf",
        ("--pnp-f-t", "1.5"): "1.5",
        ("--pnp-attn-t=-0.1",): "-0.1",
        ("--blend-alpha", "nan"): "nan",
        ("--size", "7"): "7",
        ("--size", "100000"): "100000",
        ("--size", "abc"): "abc",
        ("--dim-factor", "0"): "dim_factor",
        ("--mask-feather=-1",): "-1",
        ("--point", "1e9,5"): "1000000000",
        ("--point", "nan,5"): "nan",
        ("--box", "10,10,5,5"): "10",
        ("--neg-point", "3,3"): "negative",
        ("--mask-index=-1",): "-1",
        ("--inversion-steps", "0"): "0",
        ("--prompt-batch-size", "0"): "0",
        ("--residual-blocks", "4-x"): "4-x",
        ("--device", "tpu"): "tpu",
        ("--mask", "{ws}/missing_mask.png"): "missing_mask.png",
        ("--mask", "{ws}/folder.png"): "folder.png",
        ("--subject", "   "): "subject",
        ("--background", "dim"): "background",
        ("--restore", "global"): "restore",
        # issue 22: finite overflow, reversed ranges, seeds outside torch's generator
        ("--guidance", "1e308"): "--guidance must be in [0.0, 30.0]; got 1e+308",
        ("--guidance", "1e30"): "--guidance must be in [0.0, 30.0]",
        ("--guidance", "1e6"): "1000000.0",
        ("--guidance=-1",): "--guidance must be in",
        ("--attention-blocks", "7-2"): "backwards",
        ("--steps", "100000"): "--steps must be in [1, 1000]",
        ("--seed=-1",): "--seed must be in [0, 9223372036854775807]",
        ("--seed", "99999999999999999999999"): "--seed must be in",
        ("--inversion-steps", "5000"): "--inversion-steps must be in [1, 1000]",
        ("--prompt-batch-size", "1000"): "--prompt-batch-size must be in [1, 64]",
    }.items():
        cases[f"edit {' '.join(flags)}"] = Cli([*edit, *model, *flags], names)
    cases["edit empty prompt"] = Cli([*edit[:3], "", *edit[4:], *model], "''")
    cases["edit blank prompt"] = Cli([*edit[:3], "  ", *edit[4:], *model], "'  '")
    cases["edit no prompt"] = Cli(
        ["edit", "{ws}/good.png", "--out", "{ws}/out", *model], "--prompt"
    )
    cases["edit prompt not utf-8"] = Cli(
        [*edit[:3], "a red \udcff\udcfe circle", *edit[4:], *model], "not valid text"
    )
    cases["edit 65 prompts"] = Cli(
        [*edit[:2], *[a for k in range(65) for a in ("--prompt", f"p{k}")], *edit[4:], *model],
        "prompts must be in [1, 64]",
    )
    cases["edit out name too long"] = Cli(
        [*edit[:5], "{ws}/" + "o" * 300, *model], "choose a shorter --out"
    )
    cases["edit model index names os.system"] = Cli(
        [*edit[:5], "{ws}/fresh", "--model", "{ws}/hostile_model", *TINY], "'os'"
    )
    cases["edit out is a file"] = Cli([*edit[:5], "{ws}/blocker", *model], "blocker")
    cases["edit out under a file"] = Cli([*edit[:5], "{ws}/blocker/sub", *model], "blocker")
    cases["edit out held"] = Cli([*edit[:5], "{ws}/held", *model], "in use by pid")
    cases["edit out finished by others"] = Cli([*edit, *model], "other settings")
    cases["edit model missing"] = Cli(
        [*edit[:5], "{ws}/fresh", "--model", "/no/model"], "/no/model"
    )
    for name, names in {
        "laughs.yaml": "aliases",
        "bool_steps.yaml": "True",
        "inf.yaml": "inf",
        "nested.yaml": "['a dog']",
        "list.yaml": "mapping",
        "section.yaml": "warp",
        "key.yaml": "guidanse",
        "notmap.yaml": "pnp",
        "python.yaml": "python/object",
        "string_size.yaml": "'32'",
        "blocks.yaml": "True",
        "huge.yaml": "MiB",
        "binary.yaml": "binary.yaml",
        "missing.yaml": "missing.yaml",
    }.items():
        argv = ["edit", "{ws}/good.png", "--config", f"{{ws}}/{name}", "--out", "{ws}/out"]
        if name != "nested.yaml":
            argv += ["--prompt", "x"]
        # no --size/--steps flags here: they would override the file's bad values
        cases[f"edit config {name}"] = Cli([*argv, "--model", "{model}", "--quiet"], names)
    for flags, names in {
        ("--mask", "{ws}/garbage_mask.png"): "garbage_mask.png",
        ("--mask", "{ws}/photo_mask.png"): "distinct colours",
        ("--mask", "{ws}/ok_mask.png", "--mask-grow", "100000"): "100000",
        ("--mask", "{ws}/ok_mask.png", "--mask-feather", "1e9"): "1000000000",
        ("--residual-blocks", "99"): "99",
        ("--mask", "{ws}/bomb.png"): "bomb.png",
    }.items():
        cases[f"edit model {' '.join(flags)}"] = Cli(
            [*edit[:5], "{ws}/fresh", *model, *flags], names, needs_model=True
        )
    bench = ["bench", "--methods", "pnp", "--no-metrics", "--out", "{ws}/bench", *model]
    for manifest, names in {
        "bad_json.jsonl": "bad_json.jsonl",
        "no_prompt.jsonl": "prompt",
        "missing_img.jsonl": "nope.png",
        "empty.jsonl": "empty.jsonl",
        "nested.jsonl": "nested.jsonl",
        "list_line.jsonl": "list_line.jsonl",
        "manifest.txt": ".txt",
        "missing.jsonl": "missing.jsonl",
        "laughs.yaml": "laughs.yaml",
    }.items():
        cases[f"bench dataset {manifest}"] = Cli([*bench, "--dataset", f"{{ws}}/{manifest}"], names)
    good_manifest = ["--dataset", "{ws}/ok.jsonl"]
    for flags, names in {
        ("--methods", "warp"): "warp",
        ("--methods", "pnp:zzz=1"): "zzz",
        ("--methods", "pnp:guidance=.inf"): "inf",
        ("--sweep", "pnp_f_t"): "pnp_f_t",
        ("--sweep", "pnp_f_t=&a [*a]"): "aliases",
        ("--limit", "0"): "0",
        ("--limit", "-1"): "-1",
    }.items():
        cases[f"bench {' '.join(flags)}"] = Cli([*bench, *good_manifest, *flags], names)
    cases["bench out held"] = Cli(
        [*bench[:5], "{ws}/held", *bench[6:], "--dataset", "{ws}/nested.jsonl"], "nested"
    )
    batch = ["batch", "--out", "{ws}/batch", *model]
    for source, flags, names in (
        ("{ws}/nope", (), "nope"),
        ("{ws}/manifest.txt", (), "manifest.txt"),
        ("{ws}/bad_json.jsonl", (), "bad_json.jsonl"),
        ("{ws}/nested.jsonl", (), "nested.jsonl"),
        ("{ws}/photos", (), "prompt"),
        ("{ws}/photos", ("--prompt", "x", "--steps", "0"), "steps"),
        ("{ws}/photos", ("--prompt", "x", "--guidance=inf"), "inf"),
        ("{ws}/photos", ("--prompt", "x", "--config", "{ws}/laughs.yaml"), "aliases"),
        ("{ws}/deep.jsonl", (), "deep.jsonl, line 1: entry 0, field '<line>'"),
        ("{ws}/latin1.jsonl", (), "latin1.jsonl, line 1: not UTF-8"),
        ("{ws}/typo.jsonl", (), "promts"),
        ("{ws}/seed-1.jsonl", (), "seed"),
        ("{ws}/seed99999999999999999999999.jsonl", (), "seed"),
        ("{ws}/shared/outside.jsonl", ("--confine",), "outside the manifest's folder"),
        ("{ws}/photos", ("--prompt", "x", "--workers=-3"), "workers must be in [1, 256]"),
        ("{ws}/photos", ("--prompt", "x", "--workers", "2"), "--engine ray"),
        ("{ws}/photos", ("--prompt", "a \udcff b"), "not valid text"),
    ):
        cases[f"batch {source.split('/')[-1]} {' '.join(flags)}"] = Cli(
            [*batch, source, *flags], names
        )
    cases["batch out held"] = Cli(
        ["batch", "--out", "{ws}/held", *model, "{ws}/photos", "--prompt", "x"], "in use by pid"
    )
    demo = ["demo", "--out", "{ws}/demo", "--device", "cpu"]
    for flags, names in {
        ("--pairs", "0"): "0",
        ("--pairs", "-3"): "-3",
        ("--steps", "0"): "0",
        ("--methods", "warp"): "warp",
        ("--model", "/no/toy"): "/no/toy",
        ("--device", "tpu"): "tpu",
        ("--out", "{ws}/blocker/sub"): "blocker",
    }.items():
        cases[f"demo {' '.join(flags)}"] = Cli([*demo, *flags], names)
    return cases


CLI_CASES = cli_cases()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, crc32 of bytes) of every file under ``root`` (links not followed)."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found[str(path)] = (path.stat().st_mtime_ns, zlib.crc32(path.read_bytes()))
    return found


@pytest.mark.parametrize("case", list(CLI_CASES), ids=list(CLI_CASES))
def test_cli_refuses_bad_input(
    case: str, ws: Path, held: Path, tiny_model_dir: Path, capsys
) -> None:
    spec = CLI_CASES[case]
    argv = [a.replace("{ws}", str(ws)).replace("{model}", str(tiny_model_dir)) for a in spec.argv]
    before = snapshot(ws)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err
    assert spec.names in err, err[-500:]
    after = snapshot(ws)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing touched


ApiCase = Callable[[PnPEditor, EditConfig, Path], Any]


def _cfg(cfg: EditConfig, **changes: Any) -> EditConfig:
    out = EditConfig.from_dict(cfg.to_dict())
    for key, value in changes.items():
        section, name = key.split("__")
        setattr(getattr(out, section), name, value)
    return out


API_CASES: dict[str, tuple[ApiCase, str]] = {
    "prompt int": (lambda e, c, w: e.edit(w / "good.png", 5, c), "int 5"),
    "prompt None": (lambda e, c, w: e.edit(w / "good.png", None, c), "NoneType"),
    "prompt nested": (lambda e, c, w: e.edit(w / "good.png", ["a", ["b"]], c), "['b']"),
    "prompt bytes": (lambda e, c, w: e.edit(w / "good.png", [b"a"], c), "bytes"),
    "prompts empty": (lambda e, c, w: e.edit(w / "good.png", [], c), "empty"),
    "prompt surrogate": (lambda e, c, w: e.edit(w / "good.png", "a \udcff b", c), "valid text"),
    "negative prompt surrogate": (
        lambda e, c, w: e.edit(w / "good.png", "x", c, negative_prompt="\udcff"),
        "negative_prompt",
    ),
    "guidance 1e308": (
        lambda e, c, w: e.edit(w / "good.png", "x", c, guidance=1e308),
        "pnp.guidance must be in [0.0, 30.0]",
    ),
    "seed -1": (lambda e, c, w: e.edit(w / "good.png", "x", c, seed=-1), "pnp.seed"),
    "config dict": (
        lambda e, c, w: e.edit(w / "good.png", "x", {"pnp": {"steps": 2}}),
        "config must be an EditConfig",
    ),
    "mask 3 channels": (
        lambda e, c, w: e.edit(w / "good.png", "x", c, mask=np.ones((32, 48, 3), np.float32)),
        "(32, 48, 3)",
    ),
    "array 5 channels": (lambda e, c, w: e.edit(np.zeros((32, 32, 5), np.uint8), "x", c), "5)"),
    "array float": (lambda e, c, w: e.edit(np.zeros((32, 32, 3)), "x", c), "float64"),
    "array 4-d": (lambda e, c, w: e.edit(np.zeros((1, 32, 32, 3), np.uint8), "x", c), "(1, 32"),
    "array empty": (lambda e, c, w: e.edit(np.zeros((0, 0, 3), np.uint8), "x", c), "0x0"),
    "image None": (lambda e, c, w: e.edit(None, "x", c), "NoneType"),
    "image bomb": (lambda e, c, w: e.edit(w / "bomb.png", "x", c), "bomb.png"),
    "guidance inf": (lambda e, c, w: e.edit(w / "good.png", "x", c, guidance=float("inf")), "inf"),
    "guidance str": (lambda e, c, w: e.edit(w / "good.png", "x", c, guidance="7"), "'7'"),
    "steps bool": (lambda e, c, w: e.edit(w / "good.png", "x", c, steps=True), "True"),
    "unknown kw": (lambda e, c, w: e.edit(w / "good.png", "x", c, guidanse=3), "guidanse"),
    "f_t nan": (lambda e, c, w: e.edit(w / "good.png", "x", c, pnp_f_t=float("nan")), "nan"),
    "size float": (
        lambda e, c, w: e.edit(w / "good.png", "x", _cfg(c, preprocess__size=32.0)),
        "32.0",
    ),
    "dim inf": (
        lambda e, c, w: e.edit(w / "good.png", "x", _cfg(c, weaken__dim_factor=float("inf"))),
        "inf",
    ),
    "threshold nan": (
        lambda e, c, w: e.edit(w / "good.png", "x", _cfg(c, mask__text_threshold=float("nan"))),
        "nan",
    ),
    "mask wrong shape": (
        lambda e, c, w: e.edit(w / "good.png", "x", c, mask=np.ones((5, 5), np.float32)),
        "5x5",
    ),
    "mask nan": (
        lambda e, c, w: e.edit(w / "good.png", "x", c, mask=np.full((32, 48), np.nan, np.float32)),
        "non-finite",
    ),
    "from_pretrained kw": (lambda e, c, w: PnPEditor.from_pretrained("m", dtyp="fp16"), "dtyp"),
    "from_pretrained int": (lambda e, c, w: PnPEditor.from_pretrained(5), "int 5"),
    "sdedit strength": (lambda e, c, w: e.sdedit(w / "good.png", "x", c, strength=2.0), "2.0"),
    "sdedit nan": (lambda e, c, w: e.sdedit(w / "good.png", "x", c, strength=float("nan")), "nan"),
    "inversion + points": (
        lambda e, c, w: e.edit(
            e.invert(w / "good.png", c), "x", _cfg(c, mask__points=[(3.0, 4.0)])
        ),
        "points",
    ),
}


def _option(flag: str) -> Any:
    from pnpsam.options import OPTIONS

    return next(option for option in OPTIONS if option.flag == flag)


def _app(name: str) -> Any:
    from pnpsam.app import actions

    return getattr(actions, name)


def _session(w: Path) -> Any:
    from pnpsam.app.session import Session

    return Session.with_photo(str(w / "good.png"), Image.open(w / "good.png"))


def _upload(w: Path, name: str) -> Any:
    ui = pytest.importorskip("pnpsam.app.ui")  # gradio
    return ui.read_upload(str(w / name), 64_000_000)


# The web app's handlers, called as its page calls them.
API_CASES.update(
    {
        "app value steps abc": (
            lambda e, c, w: _app("parse_value")(_option("--steps"), "abc"),
            "abc",
        ),
        "app guidance inf": (
            lambda e, c, w: _app("with_values")(c, [_option("--guidance")], ["inf"]),
            "inf",
        ),
        "app steps 0": (lambda e, c, w: _app("with_values")(c, [_option("--steps")], ["0"]), "0"),
        "app size 1e9": (
            lambda e, c, w: _app("with_values")(c, [_option("--size")], ["1e9"]),
            "1e9",
        ),
        "app config steps true": (
            lambda e, c, w: _app("merge_sections")(c, {"pnp": {"steps": True}}),
            "True",
        ),
        "app config model": (
            lambda e, c, w: _app("merge_sections")(c, {"model": {"model": "x"}}),
            "'model'",
        ),
        "app config list": (lambda e, c, w: _app("merge_sections")(c, [1]), "list"),
        "app config nan": (
            lambda e, c, w: _app("merge_sections")(c, {"pnp": {"guidance": float("nan")}}),
            "nan",
        ),
        "app no prompt": (lambda e, c, w: _app("parse_prompts")("  \n "), "prompt"),
        "app 500 prompts": (lambda e, c, w: _app("parse_prompts")("x\n" * 500), "500"),
        "app method warp": (lambda e, c, w: _app("uses_subject")("warp", _session(w)), "warp"),
        "app click nan": (lambda e, c, w: _session(w).click(float("nan"), 3, "subject"), "nan"),
        "app click mode": (lambda e, c, w: _session(w).click(3, 3, "poke"), "poke"),
        "app blank subject": (lambda e, c, w: _session(w).with_subject_text("  "), "subject"),
        "app upload noise": (lambda e, c, w: _upload(w, "noise.png"), "noise.png"),
        "app upload bomb": (lambda e, c, w: _upload(w, "bomb.png"), "bomb.png"),
        "app garbage mask": (
            lambda e, c, w: _app("run_edit")(
                e,
                _session(w).with_mask_file(str(w / "garbage_mask.png")),
                ["x"],
                _app("subject_config")(
                    c, _session(w).with_mask_file(str(w / "garbage_mask.png")), True
                ),
                w / "out",
            ),
            "garbage_mask.png",
        ),
    }
)


@pytest.mark.parametrize("case", list(API_CASES), ids=list(API_CASES))
def test_api_refuses_bad_input(case: str, ws: Path, editor: PnPEditor) -> None:
    call, names = API_CASES[case]
    cfg = editor.default_config()
    cfg.preprocess.size, cfg.pnp.steps = 32, 2
    before = snapshot(ws)
    with pytest.raises((ValueError, OutputError)) as raised:
        call(editor, cfg, ws)
    assert names in str(raised.value)
    assert snapshot(ws) == before


def test_sweep_size() -> None:
    assert len(CLI_CASES) + len(API_CASES) >= 60
    assert {case.split()[0] for case in CLI_CASES} >= {"edit", "bench", "batch", "demo"}
    assert sum(case.startswith("app ") for case in API_CASES) >= 10
