"""The council's checks on uploaded records (sync.council.records.row_for), without a database:
the row it builds, the text it replaces, what it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub.events import Quantity, Reading, Stamp, StoredEvent
from sync.council.errors import StoreError
from sync.council.records import BODY, COLUMNS, MAX_JSON_DEPTH, row_for

STAMP = Stamp(wall_time=1_800_000_000.5, clock_synced=True, monotonic=12.25)


def reading(sensor_id: str = "t1", value: float = 20.5) -> dict[str, Any]:
    return StoredEvent(7, Reading(sensor_id, Quantity.TEMPERATURE, value, STAMP)).to_record()


def system(details: Any) -> dict[str, Any]:
    return {"seq": 9, "kind": "system", "wall_time": 1.0, "clock_synced": False,
            "monotonic": 2.0, "system": "gap", "details": details}  # fmt: skip


def nested(levels: int) -> Any:
    """`levels` objects inside one another."""
    doc: Any = {}
    for _ in range(levels - 1):
        doc = {"a": doc}
    return doc


def test_a_reading_row_holds_its_columns_and_the_record_as_json() -> None:
    record = reading()
    row = row_for("hub-a", record, 5.0)
    assert dict(zip(COLUMNS, row, strict=True)) == {
        "hub_id": "hub-a", "seq": 7, "kind": "reading", "wall_time": 1_800_000_000.5,
        "clock_synced": True, "monotonic": 12.25, "sensor_id": "t1",
        "quantity": "temperature", "value": 20.5, "received_at": 5.0,
        "body": json.dumps(record), "clock_corrected": False,
    }  # fmt: skip
    assert json.loads(row[BODY]) == record


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("a\x00b", "a\ufffdb"),
        ("\ud800x\udfff", "\ufffdx\ufffd"),
        ("\ud83d\ude00", "\ufffd\ufffd"),  # a pair split into two code points: both lone
        ("\U0001f600 caf\u00e9", "\U0001f600 caf\u00e9"),  # valid text is kept
        ("\\u0000 and \\ud800", "\\u0000 and \\ud800"),  # a backslash and letters, not a NUL
    ],
)
def test_unstorable_text_becomes_the_replacement_character_everywhere(
    sent: str, stored: str
) -> None:
    row = row_for("hub-a", reading(sensor_id=sent), 0.0)
    assert row[COLUMNS.index("sensor_id")] == stored
    assert json.loads(row[BODY])["sensor_id"] == stored
    details = {sent: [sent, {"k": sent}], "n": 1}
    body = json.loads(row_for("hub-a", system(details), 0.0)[BODY])
    assert body["details"] == {stored: [stored, {"k": stored}], "n": 1}


def test_the_senders_record_is_never_modified() -> None:
    details = {"e": "x\x00"}
    record = system(details)
    row_for("hub-a", record, 0.0)
    assert record["details"] is details and details == {"e": "x\x00"}


def test_nesting_is_bounded_at_the_limit() -> None:
    # The record itself is the first level.
    assert row_for("hub-a", system(nested(MAX_JSON_DEPTH - 1)), 0.0)
    for too_deep in (nested(MAX_JSON_DEPTH), [[nested(MAX_JSON_DEPTH)]]):
        with pytest.raises(StoreError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
            row_for("hub-a", system(too_deep), 0.0)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(StoreError, match="nested deeper"):
        row_for("hub-a", system({"c": cycle}), 0.0)


@pytest.mark.parametrize(
    "record",
    [
        reading(value=float("nan")),
        system({"x": [float("inf")]}),
        system({"x": {1, 2}}),  # not JSON
        {**reading(), "seq": -1},
        {**reading(), "seq": True},
        {**reading(), "seq": 2**63},
        {**reading(), "kind": "gossip"},
        {**reading(), "sensor_id": "s" * 129},
        {k: v for k, v in reading().items() if k != "wall_time"},
    ],
    ids=["nan", "inf-deep", "set", "negative", "bool", "huge", "kind", "long-id", "missing"],
)
def test_malformed_records_are_refused(record: dict[str, Any]) -> None:
    with pytest.raises(StoreError):
        row_for("hub-a", record, 0.0)


def test_tuples_and_number_keys_are_stored_as_json_reads_them_back() -> None:
    body = json.loads(row_for("hub-a", system({"t": (1, "a\x00"), 3: True}), 0.0)[BODY])
    assert body["details"] == {"t": [1, "a\ufffd"], "3": True}
