"""The user's mistakes, as exception types: every front end reports these as one line.

A :class:`UserError` names a bad value, an unusable file or a model that cannot be loaded; the
command line prints it and exits with status 2, the web app shows it on the page, ``pnpsam
batch`` records it against the photo. Anything else is an internal error and keeps its
traceback. The concrete types live with the check that raises them (``ConfigError`` in
``config``, ``ImageInputError`` in ``imageio``, ...) and subclass the builtin that callers
caught before (``ValueError``, ``OSError``, ``RuntimeError``), so ``except ValueError`` still
works. This module imports nothing from the package, so any tier may use it.
"""

from __future__ import annotations


class UserError(Exception):
    """Base of every error caused by the user's input; the message names the problem."""


class InputError(UserError, ValueError):
    """A value or file the user gave is out of range, of the wrong kind or unreadable."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class UserFileExistsError(UserError, FileExistsError):
    """A file the user's command would replace exists (and may not be replaced)."""
