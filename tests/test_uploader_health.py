"""The health report every upload carries: the contract's keys and types, whatever the runtime
hands in (a wrong type would make the council refuse the batch and stall the outbox)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.identity import HubIdentity
from hub.store import Store
from sync.council.fleet import validate_health
from sync.health import HealthReporter, checked_sensors
from tests.test_uploader import HUB, FakeClock, FakeCouncil, readings, settings

SENSORS: dict[str, dict[str, Any]] = {
    "bedroom-climate": {
        "room": "Bedroom",
        "kind": "climate",
        "last_seen": 1_764_316_800.5,
        "battery": 81,
        "silent": False,
    },
    "door": {"room": "Hall", "kind": "contact", "last_seen": None, "battery": None, "silent": True},
}


def test_report_has_the_contract_keys_with_the_contract_types(tmp_path: Path) -> None:
    ticks = iter([100.0, 142.5])
    reporter = HealthReporter(
        tmp_path,
        sensors=lambda: SENSORS,
        software_version="1.2.3",
        clock_synced=lambda: True,
        monotonic=lambda: next(ticks),
    )
    report = reporter.report(queue_depth=17, config_version=3)
    assert report == {
        "software_version": "1.2.3",
        "uptime_s": 42.5,
        "queue_depth": 17,
        "disk_free_bytes": report["disk_free_bytes"],
        "clock_synced": True,
        "config_version": 3,
        "sensors": {
            "bedroom-climate": {**SENSORS["bedroom-climate"], "battery": 81.0},
            "door": SENSORS["door"],
        },
    }
    assert isinstance(report["disk_free_bytes"], int) and report["disk_free_bytes"] > 0
    assert validate_health(report) == report  # the council's own check keeps every key


def test_defaults_read_the_real_version_and_clock(tmp_path: Path) -> None:
    from hub import __version__

    report = HealthReporter(tmp_path).report(queue_depth=0)
    assert report["software_version"] == __version__
    assert isinstance(report["clock_synced"], bool)
    assert "sensors" not in report and "config_version" not in report


def test_malformed_sensor_entries_are_dropped_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    bad: Mapping[str, Any] = {
        **SENSORS,
        "no-room": {"kind": "motion"},
        "text-battery": {"room": "x", "kind": "climate", "battery": "81%"},
        "bool-seen": {"room": "x", "kind": "climate", "last_seen": True},
        "nan": {"room": "x", "kind": "climate", "battery": float("nan")},
        "silent-text": {"room": "x", "kind": "motion", "silent": "yes"},
        "not-a-table": 5,
    }
    with caplog.at_level(logging.WARNING, logger="sync.health"):
        kept = checked_sensors(bad)
    assert set(kept) == set(SENSORS)
    assert len(caplog.records) == 6


def test_a_failing_sensor_source_or_disk_leaves_those_parts_out(tmp_path: Path) -> None:
    def broken() -> Mapping[str, Mapping[str, Any]]:
        raise RuntimeError("runtime bug")

    def clock_fails() -> bool:
        raise OSError("adjtimex")

    reporter = HealthReporter(tmp_path / "missing", sensors=broken, clock_synced=clock_fails)
    report = reporter.report(queue_depth=2)
    assert report.keys() == {"software_version", "uptime_s", "queue_depth"}


def test_a_one_off_command_sends_no_uptime_and_no_sensors(tmp_path: Path) -> None:
    report = HealthReporter(tmp_path, sensors=lambda: SENSORS, service=False).report(5)
    assert "uptime_s" not in report and "sensors" not in report
    assert report["queue_depth"] == 5


def test_every_upload_carries_the_report_with_the_live_queue_depth(tmp_path: Path) -> None:
    identity = HubIdentity.generate(tmp_path / "key")
    store = Store.open(tmp_path / "hub.db")
    store.commit(readings(250))
    clock = FakeClock()
    council = FakeCouncil(identity, clock)
    calls: list[int] = []

    def sensors() -> Mapping[str, Mapping[str, Any]]:
        calls.append(1)
        return SENSORS

    async def scenario() -> None:
        from sync.uploader import Uploader

        reporter = HealthReporter(tmp_path, sensors=sensors, clock_synced=lambda: False)
        async with httpx.AsyncClient(transport=council.transport()) as http:
            uploader = Uploader(
                store,
                identity,
                HUB,
                settings(batch_max_events=100),
                http,
                health=reporter,
                clock=clock,
                rng=random.Random(1),
                config_version=7,
            )
            assert (await uploader.drain()).ok

    asyncio.run(scenario())
    store.close()
    # What still waits once each batch is held: the council's fleet view shows 0 at the end.
    assert [b.health["queue_depth"] for b in council.batches] == [150, 50, 0]
    assert all(b.health["config_version"] == 7 for b in council.batches)
    assert all(b.health["sensors"]["door"]["silent"] is True for b in council.batches)
    assert len(calls) == 3
