"""The ``pnpsam`` command: one parser with a subcommand per front end.

``pnpsam edit`` translates photos, ``pnpsam demo`` compares every method on toy-world photos,
``pnpsam bench`` runs methods over a dataset. A user error (bad value, unreadable file, model
that cannot be loaded) prints one line naming the problem and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pnpsam.cli.bench import add_bench_parser
from pnpsam.cli.demo import add_demo_parser
from pnpsam.cli.edit import add_edit_parser
from pnpsam.cli.options import with_flags
from pnpsam.config import ConfigError
from pnpsam.core.injection import InjectionSiteError
from pnpsam.core.inversion import TimestepGridError
from pnpsam.core.pipeline import OutOfMemoryError
from pnpsam.imageio import ImageInputError
from pnpsam.masks import MaskCoverageError
from pnpsam.models.loading import ModelLoadError

USER_ERRORS = (
    ConfigError,
    ImageInputError,
    ModelLoadError,
    InjectionSiteError,
    TimestepGridError,
    OutOfMemoryError,
    FileExistsError,
    MaskCoverageError,
    ValueError,
)


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except USER_ERRORS as err:
        message = with_flags(str(err), getattr(args, "option_table", ()))
        print(f"pnpsam {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
