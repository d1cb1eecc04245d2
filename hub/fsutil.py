"""Crash-safe file replacement.

A hub loses power without warning; a half-written config or key file would leave it unable to
start. Writing a temporary file and renaming it over the target means a reader (or the next
boot) sees either the old content or the new, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "fsync_directory"]


def atomic_write_text(
    path: Path, text: str, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> None:
    """Replace `path` with UTF-8 `text` so a crash leaves the old file or the new one intact."""
    atomic_write_bytes(path, text.encode("utf-8"), mode, owner)


def atomic_write_bytes(
    path: Path, data: bytes, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> None:
    """Replace `path` with `data` so a crash leaves the old file or the new one intact.

    The temporary file lives in the target's directory because a rename is only atomic within
    one filesystem. `mode` is applied exactly (the umask does not narrow it). If the target is a
    symlink, the link itself is replaced. On any failure before the rename, the temporary file is
    removed and the target is untouched.

    `owner` (uid, gid) is given to the new file when running as root: an installer's `sudo`
    edit of a config the service reads through its group must not leave it root's alone.
    """
    path = Path(path)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        try:
            remaining = memoryview(data)
            while remaining:
                written = os.write(fd, remaining)
                remaining = remaining[written:]
            if owner is not None and os.geteuid() == 0:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make the rename itself durable: without this, a power cut can undo it on ext4."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    dir_fd = os.open(directory, flags)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
