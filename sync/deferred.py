"""An enrollment the installer could not finish (no signal in the home), kept on the hub
until the running service completes it.

`hearth setup` records the council's address and the one-time code in the data directory
(mode 0600: the code enrolls a hub until it expires); `hearth run` tries again with backoff
and starts uploading once enrolled. A definite refusal (used, expired, revoked) removes the
record: retrying cannot help, and the installer must be told.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hub.config import load_config, write_config
from hub.council_state import save_council_state
from hub.fsutil import atomic_write_text
from sync.enroll import EnrollError, enroll, enrolled_config

DEFERRED_FILENAME = "enroll-deferred.json"


def deferred_path(data_dir: Path) -> Path:
    return data_dir / DEFERRED_FILENAME


def apply_enrollment(
    config_path: Path, url: str, answer: Any, *, by_service: bool = False
) -> tuple[str, list[str]]:
    """Record the council's answer (hub id, address, the council's sections) over the config
    as it is now; returns the hub id and any council settings the hub refused.

    The installer's session writes the config file itself. The service (`by_service`) keeps
    the answer in the data directory instead: under its systemd unit it may not write /etc,
    and `load_config` lays that state over the file (hub.council_state).
    """
    cfg = load_config(config_path)
    updated, problems = enrolled_config(cfg, answer, url, cfg.council.ca_bundle)
    if by_service:
        save_council_state(updated)
    else:
        write_config(config_path, updated)
    return str(answer.hub_id), problems


def defer_enrollment(data_dir: Path, council_url: str, code: str) -> None:
    """Keep what the service needs to enroll on its own once online. Mode 0600: the code
    lets whoever holds it enroll a hub until it expires."""
    record = {"council_url": council_url, "code": code, "deferred_at": time.time()}
    atomic_write_text(deferred_path(data_dir), json.dumps(record) + "\n", mode=0o600)


def finish_deferred_enrollment(config_path: Path, *, timeout_s: float = 15.0) -> str | None:
    """For the running service: try a deferred enrollment once.

    Returns the hub id when it has just enrolled (config written, record removed), None when
    there is nothing deferred or no connection yet (try again later). A definite refusal
    (used or expired code) removes the record and raises EnrollError: retrying cannot help.
    """
    cfg = load_config(config_path)
    path = deferred_path(cfg.hub.data_dir)
    try:
        record = json.loads(path.read_text("utf-8"))
        url, code = str(record["council_url"]), str(record["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        answer = enroll(
            url,
            code,
            cfg.hub.data_dir,
            name=cfg.hub.name,
            ca_bundle=cfg.council.ca_bundle,
            hub_id=cfg.hub.id,
            timeout_s=timeout_s,
        )
    except EnrollError as exc:
        if exc.definite:
            path.unlink(missing_ok=True)
            raise
        return None
    hub_id, _problems = apply_enrollment(config_path, url, answer, by_service=True)
    path.unlink(missing_ok=True)
    return hub_id
