"""The ``pnpsam`` command: one parser with a subcommand per front end.

``pnpsam edit`` translates photos, ``pnpsam demo`` compares every method on toy-world photos,
``pnpsam bench`` runs methods over a dataset, ``pnpsam batch`` edits many photos (resumably,
in-process or on Ray). A user error (bad value, unreadable file, model
that cannot be loaded) prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from pnpsam.cli.app import add_app_parser
from pnpsam.cli.batch import add_batch_parser
from pnpsam.cli.bench import add_bench_parser
from pnpsam.cli.demo import add_demo_parser
from pnpsam.cli.edit import add_edit_parser
from pnpsam.errors import UserError
from pnpsam.options import join_negative_values, with_flags
from pnpsam.threads import apply_thread_policy


def user_errors() -> tuple[type[BaseException], ...]:
    """The exception types printed as one line with exit status 2: :class:`UserError` only, so
    an internal bug that raises a builtin ``ValueError`` keeps its traceback."""
    return (UserError,)


def _disk_error(err: OSError) -> Exception | None:
    from pnpsam.outputs import output_write_error

    return output_write_error(err)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pnpsam",
        description="Text-driven image-to-image translation with Plug-and-Play diffusion "
        "features (CVPR 2023) on Stable Diffusion, made subject-aware with Segment Anything.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_edit_parser(subparsers)
    add_demo_parser(subparsers)
    add_bench_parser(subparsers)
    add_batch_parser(subparsers)
    add_app_parser(subparsers)
    return parser


@contextmanager
def _console(command: str, quiet: bool) -> Iterator[None]:
    """For one command: warnings print as ``pnpsam COMMAND: warning: ...`` (one line, no source
    path), and ``quiet`` also hides the libraries' loading bars (diffusers, transformers).
    Both are restored afterwards (``main`` may run in-process, e.g. in tests)."""
    original_format = warnings.formatwarning

    def one_line(message: Warning | str, category: type[Warning], *_: object) -> str:
        return f"pnpsam {command}: warning: {message}\n"

    warnings.formatwarning = one_line  # type: ignore[assignment]
    restore: list[Callable[[], None]] = []
    if quiet:
        for name in ("diffusers.utils.logging", "transformers.utils.logging"):
            logging_module = importlib.import_module(name)
            if logging_module.is_progress_bar_enabled():
                logging_module.disable_progress_bar()
                restore.append(logging_module.enable_progress_bar)
    try:
        yield
    finally:
        warnings.formatwarning = original_format
        for undo in restore:
            undo()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        apply_thread_policy()  # before torch (and its thread pool) loads: see pnpsam.threads
        with _console(args.command, bool(getattr(args, "quiet", False))):
            return int(args.run(args))
    except Exception as err:
        if not isinstance(err, user_errors()):
            # a full or read-only disk under any front end is the user's to fix: one line
            if not isinstance(err, OSError) or not _disk_error(err):
                raise
            err = _disk_error(err) or err
        message = with_flags(str(err), getattr(args, "option_table", ()))
        print(f"pnpsam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
