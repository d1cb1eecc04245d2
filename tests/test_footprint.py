"""What a running hub loads. Memory figures live in `make bench`; this only keeps libraries
the hub never uses out of its process (each costs megabytes on a 1 GB Pi for years)."""

from __future__ import annotations

import subprocess
import sys

NEVER_ON_A_HUB = ("rich", "pygments", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic")


def test_the_hub_process_does_not_load_libraries_it_never_uses() -> None:
    probe = (
        "import sys\n"
        "import provisioning.cli, hub.runtime, sync.uploader, sync.health\n"
        f"print(' '.join(m for m in {NEVER_ON_A_HUB!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "", f"loaded by the hub: {done.stdout.strip()}"
