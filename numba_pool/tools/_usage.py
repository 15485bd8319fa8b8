"""What every ``numba-pool`` command shares: exit statuses, the errors that map to them, and the output-file check."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_MISSING_EXTRA = 3


class MissingExtra(RuntimeError):
    """An optional dependency a command needs is not installed; the message says which extra brings it."""


class UsageError(ValueError):
    """An argument or input file the command cannot use, found before the work starts (exit status 2)."""


def require_writable(path: Path, option: str) -> None:
    """Raise UsageError unless a file can be written at ``path``: checked before the work, not after it."""
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: the directory {folder} does not exist")
    try:  # creating a file is the one test that also holds for root and read-only file systems
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".numba-pool-probe-"):
            pass
    except OSError as error:
        raise UsageError(f"{option} {path}: cannot write in the directory {folder} ({error.strerror})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: the file exists and is read-only")
