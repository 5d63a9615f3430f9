"""What the README imports works: the package's lazy exports resolve to the API's classes."""

from __future__ import annotations

import subprocess
import sys


def test_readme_import_works_in_a_fresh_interpreter() -> None:
    # a fresh process: another test importing pnpsam.api first would hide a broken export
    code = (
        "import sys\n"
        "from pnpsam import EditConfig, EditResult, Inversion, PnPEditor\n"
        "import pnpsam.api\n"
        "assert PnPEditor is pnpsam.api.PnPEditor and Inversion is pnpsam.api.Inversion\n"
        "assert EditResult is pnpsam.api.EditResult and EditConfig().pnp.steps == 50\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pnpsam

    try:
        pnpsam.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("pnpsam.NoSuchThing resolved")
