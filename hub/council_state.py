"""What the council decided for this hub while it ran, kept in the data directory.

The service runs under `ProtectSystem=strict` with only the data directory writable, so it
cannot rewrite the installer's config file in /etc. Two things change at run time: a
deferred enrollment finished by the service (hub id, council address) and a config version
pushed by the council (the COUNCIL_MANAGED sections). Both are saved here, atomically, and
`load_config` lays them over the installer's file, so every command sees the config the
hub runs with.

The installer's file wins where it knows better: a state file recorded for another hub id
(the hub was enrolled again by hand since) is ignored, and pushed sections apply only while
their version is newer than the file's own `council.config_version`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.config import COUNCIL_MANAGED, ConfigError, HubConfig, with_council_config
from hub.fsutil import atomic_write_text

log = logging.getLogger(__name__)

STATE_FILENAME = "council-state.json"


def council_state_path(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILENAME


@dataclass(frozen=True)
class CouncilState:
    hub_id: str
    council_url: str | None
    config_version: int
    sections: dict[str, Any]

    @classmethod
    def of(cls, config: HubConfig) -> CouncilState:
        """The council-given parts of an enrolled hub's effective config."""
        if config.hub.id is None:
            raise ValueError("the hub is not enrolled: there is no council state to keep")
        dumped = config.model_dump(mode="json", exclude_none=True)
        return cls(
            hub_id=config.hub.id,
            council_url=config.council.url,
            config_version=config.council.config_version,
            sections={name: dumped[name] for name in COUNCIL_MANAGED if name in dumped},
        )


def save_council_state(config: HubConfig) -> Path:
    """Keep the council-given parts of `config` (already validated) in its data directory."""
    record = asdict(CouncilState.of(config))
    path = council_state_path(config.hub.data_dir)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n", mode=0o640)
    return path


def read_council_state(data_dir: Path) -> CouncilState | None:
    """The saved state, or None when there is none. A damaged file is a ValueError naming it."""
    path = council_state_path(data_dir)
    try:
        record = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the council state: {exc}") from None
    try:
        hub_id, url = record["hub_id"], record.get("council_url")
        version, sections = record["config_version"], record["sections"]
    except (KeyError, TypeError):
        raise ValueError(f"{path}: not a council state record") from None
    valid = (
        isinstance(hub_id, str)
        and (url is None or isinstance(url, str))
        and isinstance(version, int)
        and not isinstance(version, bool)
        and isinstance(sections, dict)
    )
    if not valid:
        raise ValueError(f"{path}: a field has the wrong type")
    return CouncilState(hub_id, url, version, sections)


def with_council_state(config: HubConfig) -> HubConfig:
    """`config` with the council state saved in its data directory laid over it.

    Never raises: a damaged or refused state file is logged and the installer's file used as
    it is, because a hub that will not start is worse than one on older thresholds.
    """
    original = config
    try:
        state = read_council_state(config.hub.data_dir)
    except ValueError as exc:
        log.warning("%s; using the config file alone", exc)
        return config
    if state is None or config.hub.id not in (None, state.hub_id):
        return config
    if config.hub.id is None:  # enrolled by the service: the file still says nothing
        config = config.model_copy(
            update={
                "hub": config.hub.model_copy(update={"id": state.hub_id}),
                "council": config.council.model_copy(
                    update={"url": state.council_url or config.council.url}
                ),
            }
        )
    mine = CouncilState.of(config)
    candidates = [(mine.sections, mine.config_version)]
    if state.config_version > mine.config_version:
        candidates.insert(0, (state.sections, state.config_version))
    source = str(council_state_path(config.hub.data_dir))
    for sections, version in candidates:
        try:
            # Validated as a whole: the hub id and address taken from the state included.
            return with_council_config(config, sections, version, source)
        except ConfigError as exc:
            log.warning("council state refused (%s)", exc)
    return original
