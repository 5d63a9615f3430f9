"""Every code block of the README runs as written, so the README cannot drift from the code.

Shell blocks: each command (``\\``-continued lines joined, comments dropped) must be a
``.venv/bin/pnpsam`` call; it runs in-process through ``pnpsam.cli.main`` with
``PNPSAM_MAX_STEPS=2`` (the README documents it), offline, in a folder where ``src`` is this
checkout's, and must exit 0. Python blocks run as they stand, in the same folder. A block that
cannot run here carries ``<!-- readme-test: skip (REASON) -->`` on the line above its fence;
REASON must be one of :data:`SKIP_REASONS`, and the block must show why (one of its signs).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from pnpsam.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = re.compile(r"<!-- readme-test: skip \((\w+)\) -->")
# reason -> what a block skipped for it must contain (at least one)
SKIP_REASONS = {
    "download": ("stable-diffusion", "--subject", "photo.jpg", "photos/", "horse.jpg"),
    "install": ("make ",),
    "server": ("pnpsam app", "Client("),
}


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None  # the marker's reason


def readme_blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\w*)\s*", lines[index])
        if fence is None:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        marker = SKIP.fullmatch(lines[index - 1].strip()) if index else None
        text = "\n".join(lines[index + 1 : end])
        blocks.append(Block(index + 1, fence[1], text, marker[1] if marker else None))
        index = end + 1
    return blocks


def commands(shell: str) -> list[list[str]]:
    """The commands of a shell block, as argument lists."""
    joined = re.sub(r"\\\n", " ", shell)
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


BLOCKS = readme_blocks()


def test_every_block_runs_or_says_why_not() -> None:
    assert len(BLOCKS) >= 8
    for block in BLOCKS:
        assert block.language in ("bash", "python"), f"README line {block.line}: {block.language}"
        if block.skip is None:
            continue
        assert block.skip in SKIP_REASONS, f"README line {block.line}: reason {block.skip!r}"
        signs = SKIP_REASONS[block.skip]
        assert any(sign in block.text for sign in signs), (
            f"README line {block.line} is skipped for {block.skip!r} but shows none of {signs}"
        )
    run = [b for b in BLOCKS if b.skip is None]
    assert {b.language for b in run} == {"bash", "python"}
    every = " ".join(" ".join(c) for b in run if b.language == "bash" for c in commands(b.text))
    for part in ("edit", "--point", "--box", "--mask", "batch", "bench", "--model toy"):
        assert part in every, part  # the quick start's promises


@pytest.fixture
def readme_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").symlink_to(ROOT / "src")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PNPSAM_MAX_STEPS", "2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no 2-second hub probe: SAM falls back at once
    return tmp_path


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.skip is None], ids=lambda b: f"line{b.line}"
)
def test_readme_block_runs(block: Block, readme_folder: Path) -> None:
    if block.language == "python":
        exec(compile(block.text, f"README.md:{block.line}", "exec"), {"__name__": "readme"})
        return
    for words in commands(block.text):
        assert words[0] == ".venv/bin/pnpsam", f"README line {block.line}: {words}"
        assert main(words[1:]) == 0, f"README line {block.line}: {shlex.join(words)}"
    for out in re.findall(r"--out (\S+)", block.text):
        assert any((readme_folder / out).rglob("*.png")), out
