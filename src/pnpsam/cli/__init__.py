"""Command-line front end: ``pnpsam edit | demo | bench``. Uses the API, never the core."""

from pnpsam.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
