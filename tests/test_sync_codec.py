"""The upload batch codec: exact round trips of every event kind, and strict decoding where
anything wrong is a `BatchError` that says what and where."""

from __future__ import annotations

import json
import math
import struct
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.events import (
    Alert,
    AlertState,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)
from sync.codec import MAGIC, VERSION, Batch, BatchError, decode_batch, encode_batch
from tests.benchmarks.bench_wire import HEALTH, typical_batch
from tests.factories import alert, reading, system

HUB = "hub-0001"

# ------------------------------------------------------------------ strategies

floats = st.floats(allow_nan=False)  # NaN != NaN: checked on its own below
json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | floats | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=4)
stamps = st.builds(Stamp, floats, st.booleans(), floats)
readings = st.builds(
    Reading,
    st.text(min_size=0, max_size=12),
    st.sampled_from(list(Quantity)),
    floats,
    stamps,
)
alerts = st.builds(
    Alert,
    st.text(max_size=12),
    st.sampled_from(list(Severity)),
    st.sampled_from(list(AlertState)),
    st.text(max_size=12),
    st.none() | st.text(max_size=12),
    floats,
    st.none() | floats,
    json_objects,
    stamps,
)
systems = st.builds(SystemEvent, st.sampled_from(list(SystemKind)), json_objects, stamps)


@st.composite
def batches(draw: st.DrawFn) -> list[StoredEvent]:
    events = draw(st.lists(readings | alerts | systems, max_size=30))
    seqs = draw(
        st.lists(st.integers(1, 2**62), min_size=len(events), max_size=len(events), unique=True)
    )
    return [StoredEvent(seq=s, event=e) for s, e in zip(seqs, events, strict=True)]


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def assert_exact(got: list[StoredEvent], want: list[StoredEvent]) -> None:
    """Equality, and floats equal to the bit (== cannot tell 0.0 from -0.0)."""
    assert got == want
    for g, w in zip(got, want, strict=True):
        for attr in ("wall_time", "monotonic"):
            assert bits(getattr(g.event.stamp, attr)) == bits(getattr(w.event.stamp, attr))
        if isinstance(w.event, Reading):
            assert isinstance(g.event, Reading)
            assert bits(g.event.value) == bits(w.event.value)
            assert type(g.event.quantity) is Quantity


# ------------------------------------------------------------------ round trips


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), json_objects)
def test_round_trip_of_every_kind_is_exact(
    events: list[StoredEvent], health: dict[str, Any]
) -> None:
    batch = decode_batch(encode_batch(HUB, events, health))
    assert isinstance(batch, Batch)
    assert batch.hub_id == HUB
    assert batch.version == VERSION
    assert batch.health == json.loads(json.dumps(health))
    assert_exact(batch.events, events)


@given(st.lists(floats, min_size=1, max_size=40))
def test_any_finite_float_column_is_exact(values: list[float]) -> None:
    events = [
        StoredEvent(i + 1, Reading("s", Quantity.TEMPERATURE, v, Stamp(v, False, -v)))
        for i, v in enumerate(values)
    ]
    assert_exact(decode_batch(encode_batch(HUB, events, {})).events, events)


def test_special_floats_survive() -> None:
    specials = [math.inf, -math.inf, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]
    events = [
        StoredEvent(i + 1, Reading("s", Quantity.CO2, v, Stamp(v, True, specials[-1 - i])))
        for i, v in enumerate(specials)
    ]
    assert_exact(decode_batch(encode_batch(HUB, events, {})).events, events)
    nan = StoredEvent(1, Reading("s", Quantity.CO2, math.nan, Stamp(math.nan, True, 1.0)))
    got = decode_batch(encode_batch(HUB, [nan], {})).events[0].event
    assert isinstance(got, Reading)
    assert math.isnan(got.value) and math.isnan(got.stamp.wall_time)


def test_order_flags_and_fields_are_kept() -> None:
    """Alerts first, then readings: the uploader's order is the batch's order, seqs and all."""
    events = [
        StoredEvent(900, alert(5.0)),
        StoredEvent(12, system(1.0)),
        StoredEvent(10, reading(0.0)),
        StoredEvent(11, Reading("door", Quantity.CONTACT, 1.0, Stamp(3.0, False, 2.5))),
    ]
    batch = decode_batch(encode_batch(HUB, events, {"queue_depth": 3}))
    assert [e.seq for e in batch.events] == [900, 12, 10, 11]
    assert batch.events[3].event.stamp.clock_synced is False
    assert batch.events[0].event == events[0].event
    assert batch.health == {"queue_depth": 3}


def test_empty_batch_carries_health() -> None:
    batch = decode_batch(encode_batch(HUB, [], {"uptime_s": 1.5}))
    assert batch.events == [] and batch.health == {"uptime_s": 1.5}


def test_typical_batch_is_under_half_of_jsonl_gzip() -> None:
    """Not a timing: the size is deterministic for the fixed seed."""
    from tests.benchmarks.bench_wire import json_lines_gzip

    events = typical_batch(500)
    body = encode_batch(HUB, events, HEALTH)
    assert len(body) <= 0.5 * len(json_lines_gzip(events, HEALTH))
    assert_exact(decode_batch(body).events, events)


def test_encode_refuses_what_no_batch_may_hold() -> None:
    with pytest.raises(ValueError, match="hub_id"):
        encode_batch("", [], {})
    with pytest.raises(ValueError, match=r"events\[1\].seq: 5 appears twice"):
        encode_batch(HUB, [StoredEvent(5, reading()), StoredEvent(5, reading())], {})
    with pytest.raises(ValueError, match=r"events\[0\].seq"):
        encode_batch(HUB, [StoredEvent(0, reading())], {})


# ------------------------------------------------------------------ error paths
# Hand-built payloads: the same wire layout the codec documents, so each fault is exact.


def _uint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _sint(n: int) -> bytes:
    return _uint(n << 1 if n >= 0 else ((-n) << 1) - 1)


def _text(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _uint(len(b)) + b


def _wrap(payload: bytes, version: int = VERSION, compression: int = 1) -> bytes:
    return MAGIC + bytes((version, compression)) + zlib.compress(payload)


def _one_reading(
    quantity: str = "temperature",
    flags: bytes = b"\x04",
    others: str = "[]",
    seq: int = 1,
    tail: bytes = b"",
    health: str = "{}",
) -> bytes:
    """A payload with one reading (value 20.5 at t=1.0, monotonic 1.0)."""
    return (
        _text(HUB)
        + _text(health)
        + _uint(1)
        + flags
        + _sint(seq)
        + _sint(0)
        + _uint(0)
        + _sint(1)  # wall_time: exponent 0, no exceptions, 1
        + _sint(0)
        + _uint(0)
        + _sint(0)  # monotonic: 0 from wall_time
        + _uint(1)
        + _text("lounge")
        + _uint(1)
        + _text(quantity)
        + _uint(1)
        + _uint(0)
        + _uint(0)  # one series (sensor 0, quantity 0)
        + _uint(0)  # the reading is in series 0
        + _sint(-1)
        + _uint(0)
        + _sint(205)  # values: 205e-1
        + _text(others)
        + tail
    )


def test_hand_built_payload_decodes() -> None:
    """The hand-built layout below is right, so each error test changes only its fault."""
    batch = decode_batch(_wrap(_one_reading()))
    assert batch.events == [
        StoredEvent(1, Reading("lounge", Quantity.TEMPERATURE, 20.5, Stamp(1.0, True, 1.0)))
    ]


def raises(body: bytes, match: str, **kw: int) -> None:
    with pytest.raises(BatchError, match=match):
        decode_batch(body, **kw)


def test_unknown_quantity_names_the_event() -> None:
    raises(
        _wrap(_one_reading(quantity="temprature")),
        r"events\[0\]\.quantity: 'temprature' is not a known quantity",
    )


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "too short"),
        (b"GARBAGE!", "does not start with"),
        (MAGIC + bytes((9, 1)) + b"x", "format version 9 is not supported"),
        (MAGIC + bytes((1, 7)) + b"x", "compression 7 is not supported"),
        (MAGIC + bytes((1, 1)) + b"not zlib at all", "corrupt zlib stream"),
        (_wrap(_one_reading())[:-3], "truncated"),
        (_wrap(_one_reading()) + b"extra", "stray bytes after the compressed stream"),
        (_wrap(_one_reading(tail=b"\x00")), "payload: 1 stray bytes"),
        (_wrap(_one_reading()[:-4]), "truncated"),
        (_wrap(_one_reading(flags=b"\x07")), r"events\[0\]\.flags"),
        (_wrap(_one_reading(flags=b"\x10")), r"events\[0\]\.flags"),
        (_wrap(_one_reading(seq=0)), r"events\[0\]\.seq: 0 is not positive"),
        (_wrap(_one_reading(health="[1]")), "health: is a JSON list"),
        (_wrap(_one_reading(health="{")), "health: not valid JSON"),
        (_wrap(_one_reading(health="[" * 100_000)), "health: not valid JSON"),
        (_wrap(_one_reading(others="[{}]")), "alerts_and_system: expected a list of 0"),
        (_wrap(_text("") + _text("{}")), "hub_id: is empty"),
        (_wrap(_text(b"\xff\xfe") + _text("{}")), "hub_id: not UTF-8"),
        (_wrap(_text(HUB) + _text("{}") + b"\xff" * 700), "events: integer too long"),
    ],
)
def test_each_fault_is_named(body: bytes, match: str) -> None:
    raises(body, match)


def test_limits() -> None:
    body = encode_batch(HUB, [StoredEvent(i + 1, reading(float(i))) for i in range(20)], {})
    raises(body, r"events: 20 is more than the 10 allowed", max_events=10)
    raises(body, r"decompresses to more than 50 bytes", max_decoded_bytes=50)
    decode_batch(body, max_events=20)


def test_decompression_bomb_stops_at_the_limit() -> None:
    bomb = MAGIC + bytes((VERSION, 1)) + zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)
    assert len(bomb) < 100_000
    raises(bomb, "decompresses to more than 1048576 bytes", max_decoded_bytes=1024 * 1024)


def test_inconsistent_columns() -> None:
    two = encode_batch(HUB, [StoredEvent(3, reading()), StoredEvent(4, reading(1.0))], {})
    payload = bytearray(zlib.decompress(two[6:]))
    at = payload.index(bytes((2, 4, 4))) + 3  # n, flags; then seq 3 and delta +1
    assert payload[at : at + 2] == bytes((6, 2))
    payload[at + 1] = 0  # delta 0: the same seq twice
    raises(_wrap(bytes(payload)), r"events\[1\]\.seq: 3 repeats events\[0\]")

    def series_ref(k: int) -> bytes:
        return (
            _text(HUB)
            + _text("{}")
            + _uint(1)
            + b"\x00"
            + _sint(1)
            + _sint(0)
            + _uint(0)
            + _sint(1)
            + _sint(0)
            + _uint(0)
            + _sint(0)
            + _uint(1)
            + _text("a")
            + _uint(1)
            + _text("co2")
            + _uint(1)
            + _uint(0)
            + _uint(k)
        )

    raises(_wrap(series_ref(3)), r"series\[0\]: refers to a dictionary entry")
    dup = (
        _text(HUB)
        + _text("{}")
        + _uint(2)
        + b"\x00\x00"
        + _sint(1)
        + _sint(1)
        + _sint(0)
        + _uint(0)
        + _sint(1)
        + _sint(0)
        + _sint(0)
        + _uint(0)
        + _sint(0)
        + _sint(0)
        + _uint(2)
        + _text("a")
        + _text("a")
    )
    raises(_wrap(dup), r"sensor_ids: the dictionary repeats an entry")


def test_float_column_faults() -> None:
    def with_wall(column: bytes) -> bytes:
        return _wrap(_text(HUB) + _text("{}") + _uint(1) + b"\x04" + _sint(1) + column)

    raises(with_wall(_sint(5000)), r"wall_time\.exponent: 5000 is out of range")
    raises(with_wall(_sint(0) + _uint(2)), r"wall_time\.exceptions: 2 is more than the 1")
    raises(with_wall(_sint(0) + _uint(1) + _uint(0) + _uint(9)), "not a known float exception")
    raises(with_wall(_sint(0) + _uint(1) + _uint(3) + _uint(1)), "out of order or range")
    raises(with_wall(_sint(300) + _uint(0) + _sint(10**20)), r"wall_time\[0\]: .* overflows")
    raises(with_wall(_sint(0) + _uint(0) + _sint(1 << 4050)), r"wall_time\[0\]: mantissa too")
    # monotonic may not use a coarser exponent than the wall_time column it is based on
    raises(with_wall(_sint(0) + _uint(0) + _sint(1) + _sint(2)), r"monotonic\.exponent")


def _other(o: object) -> bytes:
    """A payload with one alert (flags 0x05) whose JSON record is `o`."""
    return _wrap(
        _text(HUB)
        + _text("{}")
        + _uint(1)
        + b"\x05"
        + _sint(1)
        + _sint(0)
        + _uint(0)
        + _sint(1)
        + _sint(0)
        + _uint(0)
        + _sint(0)
        + _uint(0)
        + _uint(0)
        + _uint(0)
        + _sint(0)
        + _uint(0)
        + _text(json.dumps([o]))
    )


GOOD_ALERT: dict[str, Any] = {
    "check": "cold_home",
    "severity": "urgent",
    "state": "raised",
    "room": "lounge",
    "sensor_id": None,
    "start": 1.0,
    "end": None,
    "evidence": {},
}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"severity": "dire"}, r"events\[0\]\.severity: 'dire' is not a known severity"),
        ({"state": "gone"}, r"events\[0\]\.state: 'gone' is not a known alert state"),
        ({"check": 3}, r"events\[0\]\.check: 3 is not a string"),
        ({"room": None}, r"events\[0\]\.room"),
        ({"sensor_id": 1}, r"events\[0\]\.sensor_id"),
        ({"start": "x"}, r"events\[0\]\.start"),
        ({"start": True}, r"events\[0\]\.start"),
        ({"end": []}, r"events\[0\]\.end"),
        ({"evidence": []}, r"events\[0\]\.evidence"),
        ({"extra": 1}, r"events\[0\]: an alert needs exactly"),
    ],
)
def test_alert_faults(change: dict[str, Any], match: str) -> None:
    decode_batch(_other(GOOD_ALERT))
    raises(_other({**GOOD_ALERT, **change}), match)


def test_system_and_record_shape_faults() -> None:
    def system_body(o: object) -> bytes:
        body = bytearray(_other(o))
        payload = bytearray(zlib.decompress(bytes(body[6:])))
        payload[len(_text(HUB) + _text("{}") + _uint(1))] = 0x06  # kind: system
        return _wrap(bytes(payload))

    decode_batch(system_body({"system": "gap", "details": {"dropped": 3}}))
    raises(system_body({"system": "reboot", "details": {}}), r"'reboot' is not a known system")
    raises(system_body({"system": "gap", "details": 1}), r"events\[0\]\.details")
    raises(system_body(["gap"]), r"events\[0\]: a system event needs exactly")
    raises(_other("alert"), r"events\[0\]: an alert needs exactly")


# ------------------------------------------------------------------ fuzzing


def _decode_or_batch_error(body: bytes) -> None:
    try:
        decode_batch(body, max_decoded_bytes=1024 * 1024)
    except BatchError as exc:
        # The catch-all net must never be what fires: every fault deserves its own message.
        assert not str(exc).startswith("payload: malformed"), exc


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(body: bytes) -> None:
    _decode_or_batch_error(body)
    _decode_or_batch_error(MAGIC + bytes((VERSION, 1)) + body)
    _decode_or_batch_error(_wrap(body))


REAL = [encode_batch(HUB, typical_batch(40, seed=s), {"v": 1}) for s in range(3)] + [
    encode_batch(
        HUB,
        [StoredEvent(1, alert()), StoredEvent(2, system()), StoredEvent(3, reading())],
        {"x": [1, 2]},
    )
]
REAL_PAYLOADS = [zlib.decompress(b[6:]) for b in REAL]


@st.composite
def mutations(draw: st.DrawFn, sources: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=1000)
@given(mutations(REAL_PAYLOADS))
def test_fuzz_mutated_payloads(payload: bytes) -> None:
    """Mutations under the compression: the structural checks, not zlib's checksum, must
    catch these."""
    _decode_or_batch_error(_wrap(payload))


@settings(max_examples=500)
@given(mutations(REAL))
def test_fuzz_mutated_bodies(body: bytes) -> None:
    _decode_or_batch_error(body)
