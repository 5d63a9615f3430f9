"""User errors are their own exception types; an internal bug is never reported as one."""

from __future__ import annotations

import argparse

import pytest

from pnpsam.cli import main
from pnpsam.config import ConfigError
from pnpsam.errors import InputError, UserError
from pnpsam.imageio import ImageInputError
from pnpsam.outputs import OutputError


def _run_raising(monkeypatch: pytest.MonkeyPatch, error: Exception) -> int:
    import pnpsam.cli.demo as demo

    def broken(args: argparse.Namespace) -> int:
        raise error

    # add_demo_parser reads run_demo when main() builds the parser
    monkeypatch.setattr(demo, "run_demo", broken)
    return main(["demo", "--out", "unused"])


def test_internal_value_error_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    # a builtin ValueError from inside the package is a bug, not the user's mistake (exit 2)
    with pytest.raises(ValueError, match="internal slip"):
        _run_raising(monkeypatch, ValueError("internal slip"))


def test_user_error_is_one_line_with_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_raising(monkeypatch, ConfigError("steps must be >= 1; got 0")) == 2
    assert capsys.readouterr().err.strip() == "pnpsam demo: error: steps must be >= 1; got 0"


def test_user_errors_keep_the_builtin_their_callers_catch() -> None:
    assert issubclass(ConfigError, InputError) and issubclass(ConfigError, ValueError)
    assert issubclass(ImageInputError, UserError) and issubclass(ImageInputError, ValueError)
    assert issubclass(OutputError, UserError) and issubclass(OutputError, OSError)
