"""User errors: what a stage reports as one line instead of a traceback.

Bottom-level on purpose (no :mod:`unmask` imports), so every layer — data, training, tracking,
stages, orchestration — can raise or catch them without importing upward.

A *user error* is a problem in what the user gave (a params key, a file, a checkpoint, a value):
:class:`UserError` and its subclasses, plus ``FileNotFoundError`` and ``ValueError``. Library
errors that are user errors subclass :class:`UserError` next to their usual base (e.g.
``class ShardError(UserError, ValueError)``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["UserError", "ConfigError", "USER_ERRORS", "user_errors", "one_line"]


class UserError(Exception):
    """An error in the user's input; ``str(err)`` names the key, file or shape at fault."""


class ConfigError(UserError):
    """An invalid params file or override; ``str(err)`` is one line naming the file and key."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, ValueError)


def one_line(err: BaseException) -> str:
    """``err`` as one line (its message with whitespace collapsed, else its type's name)."""
    return " ".join(str(err).split()) or type(err).__name__


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn a user error into ``error: <one line>`` on stderr and exit status 2, without a
    traceback. ``UNMASK_DEBUG=1`` re-raises instead."""
    try:
        yield
    except USER_ERRORS as e:
        if os.environ.get("UNMASK_DEBUG"):
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        raise SystemExit(2) from None
