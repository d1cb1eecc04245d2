"""A small real filesystem for disk-full tests: a tmpfs of a few MiB, so a filler file makes
the disk really full and SQLite, the WAL and the sidecars meet a real ENOSPC.

As root (or already inside a user namespace, where the test process is root) the tmpfs is
mounted on a fresh directory and unmounted at the end. Otherwise the test itself is run
again in a child pytest inside a new user and mount namespace (`unshare -rm`), where it can
mount; the outer test then stands for the inner one: it fails with the inner output if the
inner run failed, and returns at once if it passed (`small_filesystem` yields None). Only
the test process can see a mount in its namespace: SQLite resolves symlinks such as
/proc/<pid>/root, so reaching another process's mount from outside is no way round it.
Where neither works the test skips saying why; mark it `ci_required` so CI fails instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

MOUNT_TIMEOUT_S = 20.0
INNER_TIMEOUT_S = 600.0
_INNER = "HEARTH_SMALLFS_INNER"  # set in the child run: mount here, never recurse
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def small_filesystem(
    where: Path, size_bytes: int, request: pytest.FixtureRequest, *, namespace: bool = False
) -> Iterator[Path | None]:
    """Yield a directory on a fresh tmpfs of `size_bytes`, made under `where`; or None when
    the test already ran (and passed) in a user namespace: the caller then returns.
    `namespace`: take that way even as root, so it is tested wherever the suite runs."""
    mount_point = where / "smallfs"
    mount_point.mkdir()
    problems: list[str] = []
    inner = os.environ.get(_INNER) == request.node.nodeid
    if inner or (os.geteuid() == 0 and not namespace):
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", mount_point],
            capture_output=True,
            text=True,
            check=False,
            timeout=MOUNT_TIMEOUT_S,
        )
        if done.returncode == 0:
            try:
                yield mount_point
            finally:
                _unmount(mount_point)
            return
        problems.append(f"mount: {done.stderr.strip()}")
    if not inner and _run_in_namespace(request.node.nodeid, problems):
        yield None
        return
    pytest.skip("no small filesystem for the disk-full test: " + "; ".join(problems))


def _unmount(mount_point: Path) -> None:
    """Unmount; lazily if a failed test left a file open there (it goes once closed)."""
    done = subprocess.run(["umount", mount_point], capture_output=True, check=False)
    if done.returncode != 0:
        subprocess.run(["umount", "-l", mount_point], check=True, timeout=MOUNT_TIMEOUT_S)


def _run_in_namespace(nodeid: str, problems: list[str]) -> bool:
    """Run test `nodeid` in a child pytest inside `unshare -rm`: True if it passed there,
    False if the namespace is not available (the reason added to `problems`). A failure
    inside fails this test with the child's output."""
    if shutil.which("unshare") is None:
        problems.append("unshare is not installed")
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        problems.append(f"unshare -rm: {probe.stderr.strip()}")
        return False
    child = subprocess.run(
        ["unshare", "-rm", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", nodeid],
        cwd=ROOT,
        env={**os.environ, _INNER: nodeid},
        capture_output=True,
        text=True,
        check=False,
        timeout=INNER_TIMEOUT_S,
    )
    output = (child.stdout + child.stderr)[-8000:]
    if child.returncode != 0 or " passed" not in child.stdout:
        pytest.fail(f"inside a user namespace the test did not pass:\n{output}", pytrace=False)
    return True


def fill(directory: Path, name: str = "other-program.log", leave: int = 0) -> Path:
    """Append to a file in `directory` until the filesystem refuses (ENOSPC), like another
    program's runaway log; returns its path (delete it to give the space back). Call it
    again to take whatever space was freed meanwhile, as that log would. `leave`: stop
    with about that many bytes still free instead."""
    path = directory / name
    if leave:
        with path.open("ab") as log:
            log.write(bytes(max(0, shutil.disk_usage(directory).free - leave)))
        return path
    block = b"a log line that nobody rotates\n" * 128
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, block)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        # Smaller writes take what the last block left.
        for size in (512, 64, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, block[:size])
    finally:
        os.close(fd)
    return path
