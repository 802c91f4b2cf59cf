"""Writing a file so that a reader sees the old one or the new one, never a part of either.

Pure: stdlib only. The data goes to a temporary file beside the target (same file system),
fsynced, then renamed into place. With ``mode`` the temporary file has it from birth (a
key never exists with looser permissions); without, the process's umask decides, as for
``open()``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, replace: bool = True) -> None:
    """Put ``data`` at ``path`` in one step. Without ``replace`` an existing file stays
    and ``FileExistsError`` is raised (the final link fails rather than replacing it)."""
    tmp = write_temp(path, data, mode)
    try:
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_temp(path: Path, data: bytes, mode: int | None = None) -> str:
    """A complete, fsynced temporary file beside ``path``; the caller renames it."""
    tmp = str(path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make the renames in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
