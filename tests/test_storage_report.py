"""The storage state upstream and on the installer's screen: the health report's `storage`
section (hub side, checked before sending), the council's check of it and the fleet view's
flag, `hearth doctor` and `hearth status`. The full-disk behaviour itself is in
tests/test_disk_full.py."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.config import write_config
from hub.store import Store, inspect
from hub.store.diskfull import META_FULL_SINCE
from provisioning import doctor as dr
from provisioning.cli import app
from provisioning.doctor import Level
from sync.council.errors import StoreError
from sync.council.fleet import DISK_LOW_BYTES, fleet_entry, storage_flag, validate_health
from sync.health import HealthReporter, checked_storage
from tests.factories import reading
from tests.test_doctor import NOW, assert_finding, make_config, run

MIB = 1024 * 1024
FULL = {
    "state": "full",
    "since": 1_764_316_800.5,
    "failed_commits": 3,
    "dropped_readings": 4000,
    "pruned_events": 12_000,
    "buffer_bytes": 40 * MIB,
    "quota_bytes": 512 * MIB,
    "reserve_bytes": 0,
}


def test_the_service_reports_the_buffers_storage_state_and_the_council_keeps_it(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "hub.db")
    store.commit([reading(i) for i in range(10)])
    reporter = HealthReporter(tmp_path, storage=store.storage_report)
    report = reporter.report(queue_depth=10)
    storage = report["storage"]
    assert storage["state"] == "ok" and storage["since"] is None
    assert storage["buffer_bytes"] == store.used_bytes() > 0
    assert storage["quota_bytes"] == store.limits.quota_bytes
    assert validate_health(report)["storage"] == storage
    # A one-off command (hearth sync now) knows nothing of the service's state: it must not
    # overwrite the service's report at the council with a fresh "ok".
    one_off = HealthReporter(tmp_path, storage=store.storage_report, service=False)
    assert "storage" not in one_off.report(queue_depth=10)
    store.close()


def test_a_bad_storage_section_is_trimmed_on_the_hub_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sync.health"):
        assert checked_storage({"state": "melting"}) == {}
        trimmed = checked_storage({**FULL, "since": "yesterday", "failed_commits": -1})
    assert trimmed == {k: v for k, v in FULL.items() if k not in ("since", "failed_commits")}
    assert validate_health({"storage": trimmed})["storage"] == trimmed
    assert len(caplog.records) == 3


@pytest.mark.parametrize(
    ("storage", "field"),
    [
        ("full", "health.storage"),
        ({"state": 3}, "health.storage.state"),
        ({"state": "full", "since": "then"}, "health.storage.since"),
        ({"state": "full", "dropped_readings": 1.5}, "health.storage.dropped_readings"),
        ({"state": "ok", "buffer_bytes": -1}, "health.storage.buffer_bytes"),
        ({"state": "ok", "reserve_bytes": True}, "health.storage.reserve_bytes"),
    ],
)
def test_the_council_refuses_a_malformed_storage_section_naming_the_field(
    storage: Any, field: str
) -> None:
    with pytest.raises(StoreError) as info:
        validate_health({"storage": storage})
    assert str(info.value).startswith(field + ":"), str(info.value)


def test_unknown_storage_keys_are_dropped_so_a_newer_hub_never_breaks_the_council() -> None:
    assert validate_health({"storage": {**FULL, "newer": 1}})["storage"] == FULL


def test_an_unknown_storage_state_drops_the_section_not_the_upload() -> None:
    health = {"queue_depth": 3, "storage": {**FULL, "state": "degraded"}}
    assert validate_health(health) == {"queue_depth": 3}


def _row(health: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "hub_id": "hub-a",
        "name": None,
        "enrolled_at": 0.0,
        "last_contact": 10.0,
        "software_version": "1",
        "health": health,
        "health_at": 10.0,
        "clock_offset_s": 0.0,
        "config_version": 1,
        "high_water": 0,
        "events_held": 0,
    }


@pytest.mark.parametrize(
    ("health", "flag"),
    [
        (None, None),  # no report yet
        ({"queue_depth": 3}, None),  # an older hub: nothing about the disk
        ({"disk_free_bytes": 10 * 1024 * MIB}, "ok"),
        ({"disk_free_bytes": DISK_LOW_BYTES - 1}, "low"),
        # Plenty free, but less than the buffer may still take up to its quota: low.
        (
            {
                "disk_free_bytes": 300 * MIB,
                "storage": {"state": "ok", "buffer_bytes": 100 * MIB, "quota_bytes": 512 * MIB},
            },
            "low",
        ),
        ({"disk_free_bytes": 10 * 1024 * MIB, "storage": {"state": "full"}}, "full"),
        ({"storage": FULL}, "full"),
    ],
)
def test_the_fleet_view_flags_a_full_or_low_disk(
    health: dict[str, Any] | None, flag: str | None
) -> None:
    assert storage_flag(health or {}) == flag
    entry = fleet_entry(_row(health))
    assert entry.storage == flag
    if flag == "full" and health is not None and "since" in health.get("storage", {}):
        assert entry.storage_since == FULL["since"] and entry.dropped_readings == 4000
    else:
        assert entry.storage_since is None


WIDE = {"COLUMNS": "200"}  # one table row per line


def test_doctor_and_status_say_when_the_disk_has_been_full(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    store = Store.open(config.store_path)
    store.commit([reading(0)])
    store.set_meta({META_FULL_SINCE: str(NOW - 2 * 3600)})
    store.close()
    found = run(dr.check_store, config)
    assert_finding(found, Level.RED, "disk has been full since 2 h ago", fix="free space")
    assert found.details["storage_full_since"] == NOW - 2 * 3600
    assert inspect(config.store_path).storage_full_since == NOW - 2 * 3600  # status --json
    config_file = tmp_path / "hub.toml"
    write_config(config_file, config)
    shown = CliRunner().invoke(app, ["status", "--config", str(config_file)], env=WIDE)
    assert shown.exit_code == 0 and "Disk full" in shown.stdout, shown.stdout

    store = Store.open(config.store_path)
    store.set_meta({META_FULL_SINCE: None})
    store.close()
    assert run(dr.check_store, config).level is Level.GREEN
    assert inspect(config.store_path).storage_full_since is None
    shown = CliRunner().invoke(app, ["status", "--config", str(config_file)], env=WIDE)
    assert shown.exit_code == 0 and "Disk full" not in shown.stdout
