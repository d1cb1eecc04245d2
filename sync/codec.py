"""The upload batch codec: the exact bytes a hub sends the council, and strict decoding of them.

Layout (format version 1)::

    b"HRTB" | version (1 byte) | compression (1 byte: 1 = zlib) | compressed payload

The payload is column-oriented, with unsigned LEB128 varints (signed ones zigzag-coded):

    hub_id (text) | health (JSON object) | n | flags (n bytes: kind | clock_synced << 2
    | clock_corrected << 3; a stamp is never both: batches from before bit 3 decode the same)
    | seqs (first, then deltas) | wall_time (float column) | monotonic (float column, as its
    offset from wall_time: the boot offset is near constant, so deltas are tiny)
    | sensor ids, quantity names, series (sensor, quantity) pairs: dictionaries
    | one series index per reading | reading values (float column, delta within a series)
    | alerts and system events as one JSON array (their stamps live in the columns above)

Floats round-trip bit for bit. Each is split into the shortest decimal that Python's `repr`
gives for it (mantissa and power of ten); a column shares the smallest power of ten, so every
value is an integer, which is delta-coded. `float()` of that decimal is correctly rounded to
the original double, so nothing is lost; NaN, infinities and -0.0 travel as marked exceptions.
A 0.01 °C sensor value costs a byte or two instead of eight, with no precision chosen for it.

Decoding trusts nothing: every failure is a `BatchError` naming the field and the position.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub.events import (
    Alert,
    AlertState,
    Event,
    Quantity,
    Reading,
    Severity,
    Stamp,
    StoredEvent,
    SystemEvent,
    SystemKind,
)

MAGIC = b"HRTB"
VERSION = 1
COMPRESSION_ZLIB = 1
CONTENT_TYPE = "application/vnd.hearth.batch"

_QUANTITIES = {q.value: q for q in Quantity}
_KIND_READING, _KIND_ALERT, _KIND_SYSTEM = 0, 1, 2
_KIND_NAMES = ("reading", "alert", "system")
_SYNCED_BIT = 4
_CORRECTED_BIT = 8

# Float exceptions: values with no finite decimal mantissa, or whose sign a mantissa loses.
_NAN, _POS_INF, _NEG_INF, _NEG_ZERO = 1, 2, 3, 4
_SPECIAL_VALUES = {
    _NAN: math.nan,
    _POS_INF: math.inf,
    _NEG_INF: -math.inf,
    _NEG_ZERO: -0.0,
}
# A double's shortest repr has at most 17 digits and an exponent within about -324..308, so
# real columns never need more; anything beyond is a hostile body, refused before big maths.
_MAX_EXPONENT = 400
_MAX_VARINT_BITS = 4096
_MAX_INT_BITS = 4000  # str(int) is capped at 4300 digits; 4000 bits is about 1200

_ALERT_KEYS = frozenset(
    ("check", "severity", "state", "room", "sensor_id", "start", "end", "evidence")
)
_SYSTEM_KEYS = frozenset(("system", "details"))


class BatchError(ValueError):
    """A body that is not a valid batch; the message says what was wrong and where."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One decoded upload: the hub's events in the order it sent them, and its health report."""

    hub_id: str
    events: list[StoredEvent]
    health: dict[str, Any]
    version: int = VERSION


# ---------------------------------------------------------------------------- encoding


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def uint(self, n: int) -> None:
        while n >= 0x80:
            self.buf.append((n & 0x7F) | 0x80)
            n >>= 7
        self.buf.append(n)

    def sint(self, n: int) -> None:
        self.uint(n << 1 if n >= 0 else ((-n) << 1) - 1)

    def blob(self, data: bytes) -> None:
        self.uint(len(data))
        self.buf += data

    def text(self, s: str) -> None:
        self.blob(s.encode("utf-8"))


def _decimal(x: float) -> tuple[int, int] | int:
    """(mantissa, exponent) of the shortest decimal that reads back as `x`, or a special code."""
    x = float(x)
    if x != x:
        return _NAN
    if math.isinf(x):
        return _POS_INF if x > 0 else _NEG_INF
    if x == 0.0:
        return _NEG_ZERO if math.copysign(1.0, x) < 0 else (0, 0)
    mant, _, exp = repr(x).partition("e")
    whole, _, frac = mant.partition(".")
    m = int(whole + frac)
    e = (int(exp) if exp else 0) - len(frac)
    while m % 10 == 0:
        m //= 10
        e += 1
    return m, e


def _write_floats(
    w: _Writer,
    xs: Sequence[float],
    *,
    groups: Sequence[int] | None = None,
    base: tuple[int, list[int | None]] | None = None,
) -> tuple[int, list[int | None]]:
    """Write one float column; returns (exponent, integers) so a later column can be coded
    as its offset from this one (`base`). `groups` delta-codes within each group only."""
    parts = [_decimal(x) for x in xs]
    exps = [p[1] for p in parts if isinstance(p, tuple)]
    exp = min(exps, default=0)
    if base is not None:
        exp = min(exp, base[0])
    ints: list[int | None] = [
        p[0] * 10 ** (p[1] - exp) if isinstance(p, tuple) else None for p in parts
    ]
    specials = [(i, p) for i, p in enumerate(parts) if isinstance(p, int)]
    w.sint(exp)
    w.uint(len(specials))
    last = 0
    for i, code in specials:
        w.uint(i - last)
        w.uint(code)
        last = i
    prev: dict[int, int] = {}
    for i, v in enumerate(ints):
        if v is None:
            continue
        if base is not None:
            b = base[1][i]
            v -= 0 if b is None else b * 10 ** (base[0] - exp)
        g = groups[i] if groups is not None else 0
        w.sint(v - prev.get(g, 0))
        prev[g] = v
    return exp, ints


def _json_bytes(value: object) -> bytes:
    # default=str as in the hub's store: what reaches here came out of that store's JSON.
    return json.dumps(value, separators=(",", ":"), default=str).encode("utf-8")


def encode_batch(
    hub_id: str,
    events: Sequence[StoredEvent],
    health: Mapping[str, Any],
    *,
    corrected_flag: bool = True,
) -> bytes:
    """The upload body for these events, in the order given (the uploader's priority order).

    `corrected_flag` False: a corrected stamp goes without bit 3 (its corrected wall time,
    flagged unsynchronised), for a council that has not announced it understands the bit
    (sync.protocol.FEATURE_CLOCK_CORRECTED): an older one refuses the batch otherwise.

    Raises ValueError for what no valid batch may hold (empty hub id, repeated or
    non-positive sequence numbers), so the hub finds its own bug before the council does.
    """
    if not hub_id:
        raise ValueError("hub_id must not be empty")
    seen: set[int] = set()
    for i, se in enumerate(events):
        if isinstance(se.seq, bool) or not isinstance(se.seq, int) or se.seq < 1:
            raise ValueError(f"events[{i}].seq: {se.seq!r} is not a positive integer")
        if se.seq in seen:
            raise ValueError(f"events[{i}].seq: {se.seq} appears twice")
        seen.add(se.seq)

    w = _Writer()
    w.text(hub_id)
    w.blob(_json_bytes(dict(health)))
    w.uint(len(events))
    evs = [se.event for se in events]
    flags = bytearray()
    for ev in evs:
        kind = (
            _KIND_READING
            if isinstance(ev, Reading)
            else _KIND_ALERT
            if isinstance(ev, Alert)
            else _KIND_SYSTEM
        )
        st = ev.stamp
        corrected = corrected_flag and st.clock_corrected
        flags.append(
            kind | (_SYNCED_BIT if st.clock_synced else _CORRECTED_BIT if corrected else 0)
        )
    w.buf += flags
    prev_seq = 0
    for se in events:
        w.sint(se.seq - prev_seq)
        prev_seq = se.seq
    wall = _write_floats(w, [ev.stamp.wall_time for ev in evs])
    _write_floats(w, [ev.stamp.monotonic for ev in evs], base=wall)

    readings = [ev for ev in evs if isinstance(ev, Reading)]
    sensors: dict[str, int] = {}
    quantities: dict[str, int] = {}
    series: dict[tuple[int, int], int] = {}
    series_of: list[int] = []
    for r in readings:
        s = sensors.setdefault(r.sensor_id, len(sensors))
        q = quantities.setdefault(Quantity(r.quantity).value, len(quantities))
        series_of.append(series.setdefault((s, q), len(series)))
    for table in (sensors, quantities):
        w.uint(len(table))
        for name in table:
            w.text(name)
    w.uint(len(series))
    for s, q in series:
        w.uint(s)
        w.uint(q)
    for k in series_of:
        w.uint(k)
    _write_floats(w, [r.value for r in readings], groups=series_of)

    others: list[dict[str, Any]] = []
    for ev in evs:
        if isinstance(ev, Alert):
            others.append(
                {
                    "check": ev.check,
                    "severity": Severity(ev.severity).value,
                    "state": AlertState(ev.state).value,
                    "room": ev.room,
                    "sensor_id": ev.sensor_id,
                    "start": ev.start,
                    "end": ev.end,
                    "evidence": dict(ev.evidence),
                }
            )
        elif isinstance(ev, SystemEvent):
            others.append({"system": SystemKind(ev.kind).value, "details": dict(ev.details)})
    w.blob(_json_bytes(others))
    header = MAGIC + bytes((VERSION, COMPRESSION_ZLIB))
    return header + zlib.compress(bytes(w.buf), 9)


# ---------------------------------------------------------------------------- decoding


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self, what: str) -> int:
        start = self.pos
        data = self.data
        result = 0
        shift = 0
        while True:
            if self.pos >= len(data):
                raise BatchError(f"{what}: truncated (payload byte {start})")
            b = data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7
            if shift > _MAX_VARINT_BITS:
                raise BatchError(f"{what}: integer too long (payload byte {start})")

    def sint(self, what: str) -> int:
        z = self.uint(what)
        return z >> 1 if not z & 1 else -((z + 1) >> 1)

    def uints(self, n: int, what: str) -> list[int]:
        """`n` unsigned varints: the columns' hot loop, inlined (a call per value and a label
        built per value cost more than the decoding itself). Faults name the index."""
        data = self.data
        end = len(data)
        pos = self.pos
        out: list[int] = []
        append = out.append
        for i in range(n):
            start = pos
            result = 0
            shift = 0
            while True:
                if pos >= end:
                    raise BatchError(f"{what}[{i}]: truncated (payload byte {start})")
                b = data[pos]
                pos += 1
                result |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
                if shift > _MAX_VARINT_BITS:
                    raise BatchError(f"{what}[{i}]: integer too long (payload byte {start})")
            append(result)
        self.pos = pos
        return out

    def sints(self, n: int, what: str) -> list[int]:
        return [z >> 1 if not z & 1 else -((z + 1) >> 1) for z in self.uints(n, what)]

    def count(self, what: str, limit: int) -> int:
        n = self.uint(what)
        if n > limit:
            raise BatchError(f"{what}: {n} is more than the {limit} allowed")
        return n

    def raw(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise BatchError(f"{what}: truncated (needs {n} bytes at payload byte {self.pos})")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def blob(self, what: str) -> bytes:
        return self.raw(self.uint(what), what)

    def text(self, what: str) -> str:
        try:
            return self.blob(what).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BatchError(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None

    def json(self, what: str) -> Any:
        raw = self.blob(what)
        try:
            return json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise BatchError(f"{what}: not valid JSON ({exc})") from None


def _read_floats(
    r: _Reader,
    n: int,
    what: str,
    *,
    groups: Sequence[int] | None = None,
    base: tuple[int, list[int | None]] | None = None,
) -> tuple[list[float], tuple[int, list[int | None]]]:
    exp = r.sint(f"{what}.exponent")
    if abs(exp) > _MAX_EXPONENT:
        raise BatchError(f"{what}.exponent: {exp} is out of range")
    scale = 1
    if base is not None:
        if exp > base[0]:
            raise BatchError(f"{what}.exponent: {exp} is above its base column's {base[0]}")
        scale = 10 ** (base[0] - exp)
    specials: dict[int, int] = {}
    index = 0
    for k in range(r.count(f"{what}.exceptions", n)):
        step = r.uint(f"{what}.exceptions[{k}]")
        index += step
        if (k and step == 0) or index >= n:
            raise BatchError(f"{what}.exceptions[{k}]: index {index} is out of order or range")
        code = r.uint(f"{what}.exceptions[{k}]")
        if code not in _SPECIAL_VALUES:
            raise BatchError(f"{what}.exceptions[{k}]: {code} is not a known float exception")
        specials[index] = code
    deltas = r.sints(n - len(specials), what)
    # v * 10**exp, correctly rounded either way: int -> float conversion and int / int true
    # division both round the exact value once, as float("<v>e<exp>") does.
    power = 10 ** abs(exp)
    values: list[float] = []
    ints: list[int | None] = []
    prev: dict[int, int] = {}
    next_delta = 0
    for i in range(n):
        if specials and i in specials:
            values.append(_SPECIAL_VALUES[specials[i]])
            ints.append(None)
            continue
        g = groups[i] if groups is not None else 0
        v = prev.get(g, 0) + deltas[next_delta]
        next_delta += 1
        prev[g] = v
        if base is not None:
            b = base[1][i]
            v += 0 if b is None else b * scale
        if v.bit_length() > _MAX_INT_BITS:
            raise BatchError(f"{what}[{i}]: mantissa too large")
        try:
            x = float(v * power) if exp >= 0 else v / power
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise BatchError(f"{what}[{i}]: {v}e{exp} overflows a float")
        values.append(x)
        ints.append(v)
    return values, (exp, ints)


def _decompress(body: bytes, max_decoded_bytes: int) -> bytes:
    if len(body) < 6:
        raise BatchError(f"body: {len(body)} bytes is too short for a batch header")
    if body[:4] != MAGIC:
        raise BatchError(f"body: does not start with {MAGIC!r} (got {body[:4]!r})")
    if body[4] != VERSION:
        raise BatchError(f"body: format version {body[4]} is not supported (this reads {VERSION})")
    if body[5] != COMPRESSION_ZLIB:
        raise BatchError(f"body: compression {body[5]} is not supported (1 = zlib)")
    d = zlib.decompressobj()
    try:
        out = d.decompress(body[6:], max_decoded_bytes + 1)
    except zlib.error as exc:
        raise BatchError(f"body: corrupt zlib stream ({exc})") from None
    if len(out) > max_decoded_bytes or d.unconsumed_tail:
        raise BatchError(f"body: decompresses to more than {max_decoded_bytes} bytes")
    if not d.eof:
        raise BatchError("body: compressed stream is truncated")
    if d.unused_data:
        raise BatchError(f"body: {len(d.unused_data)} stray bytes after the compressed stream")
    return out


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _alert(i: int, o: object, stamp: Stamp) -> Alert:
    where = f"events[{i}]"
    if not isinstance(o, dict) or set(o) != _ALERT_KEYS:
        keys = sorted(o) if isinstance(o, dict) else type(o).__name__
        raise BatchError(f"{where}: an alert needs exactly {sorted(_ALERT_KEYS)}, got {keys}")
    for key in ("check", "room"):
        if not isinstance(o[key], str):
            raise BatchError(f"{where}.{key}: {o[key]!r} is not a string")
    if o["sensor_id"] is not None and not isinstance(o["sensor_id"], str):
        raise BatchError(f"{where}.sensor_id: {o['sensor_id']!r} is not a string or null")
    if not _number(o["start"]):
        raise BatchError(f"{where}.start: {o['start']!r} is not a number")
    if o["end"] is not None and not _number(o["end"]):
        raise BatchError(f"{where}.end: {o['end']!r} is not a number or null")
    if not isinstance(o["evidence"], dict):
        raise BatchError(f"{where}.evidence: is not an object")
    try:
        severity = Severity(o["severity"])
    except ValueError:
        raise BatchError(f"{where}.severity: {o['severity']!r} is not a known severity") from None
    try:
        state = AlertState(o["state"])
    except ValueError:
        raise BatchError(f"{where}.state: {o['state']!r} is not a known alert state") from None
    return Alert(
        check=o["check"],
        severity=severity,
        state=state,
        room=o["room"],
        sensor_id=o["sensor_id"],
        start=o["start"],
        end=o["end"],
        evidence=o["evidence"],
        stamp=stamp,
    )


def _system(i: int, o: object, stamp: Stamp) -> SystemEvent:
    where = f"events[{i}]"
    if not isinstance(o, dict) or set(o) != _SYSTEM_KEYS:
        keys = sorted(o) if isinstance(o, dict) else type(o).__name__
        raise BatchError(f"{where}: a system event needs exactly ['details', 'system'], got {keys}")
    try:
        kind = SystemKind(o["system"])
    except ValueError:
        raise BatchError(f"{where}.system: {o['system']!r} is not a known system kind") from None
    if not isinstance(o["details"], dict):
        raise BatchError(f"{where}.details: is not an object")
    return SystemEvent(kind, o["details"], stamp)


def _decode(payload: bytes, max_events: int) -> Batch:
    r = _Reader(payload)
    hub_id = r.text("hub_id")
    if not hub_id:
        raise BatchError("hub_id: is empty")
    health = r.json("health")
    if not isinstance(health, dict):
        raise BatchError(f"health: is a JSON {type(health).__name__}, not an object")
    n = r.count("events", max_events)
    flags = r.raw(n, "flags")
    kinds: list[int] = []
    for i, f in enumerate(flags):
        kind = f & 3
        if f & ~(3 | _SYNCED_BIT | _CORRECTED_BIT) or kind > _KIND_SYSTEM:
            raise BatchError(f"events[{i}].flags: {f:#04x} is not a valid kind and clock flag")
        if f & _SYNCED_BIT and f & _CORRECTED_BIT:
            raise BatchError(f"events[{i}].flags: {f:#04x} says synchronised and corrected")
        kinds.append(kind)

    seqs: list[int] = []
    first_at: dict[int, int] = {}
    seq = 0
    for i, delta in enumerate(r.sints(n, "seqs")):
        seq += delta
        if seq < 1:
            raise BatchError(f"events[{i}].seq: {seq} is not positive")
        if seq in first_at:
            raise BatchError(f"events[{i}].seq: {seq} repeats events[{first_at[seq]}]")
        first_at[seq] = i
        seqs.append(seq)
    walls, wall_base = _read_floats(r, n, "wall_time")
    monos, _ = _read_floats(r, n, "monotonic", base=wall_base)

    n_readings = kinds.count(_KIND_READING)
    tables: list[list[str]] = []
    for name in ("sensor_ids", "quantities"):
        table = [r.text(f"{name}[{k}]") for k in range(r.count(name, n_readings))]
        if len(set(table)) != len(table):
            raise BatchError(f"{name}: the dictionary repeats an entry")
        tables.append(table)
    sensor_ids, quantity_names = tables
    # Looked up once per dictionary entry, not per reading; an unknown name is reported at
    # the first reading that uses it.
    quantities = {name: _QUANTITIES[name] for name in quantity_names if name in _QUANTITIES}
    series: list[tuple[int, int]] = []
    for k in range(r.count("series", n_readings)):
        s = r.uint(f"series[{k}].sensor")
        q = r.uint(f"series[{k}].quantity")
        if s >= len(sensor_ids) or q >= len(quantity_names):
            raise BatchError(f"series[{k}]: refers to a dictionary entry that does not exist")
        series.append((s, q))
    series_of = r.uints(n_readings, "readings.series")
    for j, k in enumerate(series_of):
        if k >= len(series):
            raise BatchError(f"readings[{j}].series: {k} is not one of {len(series)} series")
    values, _ = _read_floats(r, n_readings, "values", groups=series_of)

    others = r.json("alerts_and_system")
    if not isinstance(others, list) or len(others) != n - n_readings:
        got = len(others) if isinstance(others, list) else type(others).__name__
        raise BatchError(
            f"alerts_and_system: expected a list of {n - n_readings} alerts and system"
            f" events, got {got}"
        )
    if r.pos != len(payload):
        raise BatchError(f"payload: {len(payload) - r.pos} stray bytes after the last column")

    events: list[StoredEvent] = []
    next_reading = 0
    next_other = 0
    for i, kind in enumerate(kinds):
        f = flags[i]
        stamp = Stamp(walls[i], bool(f & _SYNCED_BIT), monos[i], bool(f & _CORRECTED_BIT))
        event: Event
        if kind == _KIND_READING:
            s, q = series[series_of[next_reading]]
            quantity = quantities.get(quantity_names[q])
            if quantity is None:
                raise BatchError(
                    f"events[{i}].quantity: {quantity_names[q]!r} is not a known quantity"
                )
            event = Reading(sensor_ids[s], quantity, values[next_reading], stamp)
            next_reading += 1
        elif kind == _KIND_ALERT:
            event = _alert(i, others[next_other], stamp)
            next_other += 1
        else:
            event = _system(i, others[next_other], stamp)
            next_other += 1
        events.append(StoredEvent(seq=seqs[i], event=event))
    return Batch(hub_id=hub_id, events=events, health=health, version=VERSION)


def decode_batch(
    body: bytes, *, max_events: int = 5000, max_decoded_bytes: int = 8 * 1024 * 1024
) -> Batch:
    """Parse and check an upload body; any fault is a `BatchError`, never another exception.

    `max_decoded_bytes` stops a decompression bomb before it is inflated past that size.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise BatchError(f"body: expected bytes, got {type(body).__name__}")
    payload = _decompress(bytes(body), max_decoded_bytes)
    try:
        return _decode(payload, max_events)
    except BatchError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # A safety net only: every known fault has its own message above; the fuzz tests
        # check that the net is never the one that fires.
        raise BatchError(f"payload: malformed ({type(exc).__name__}: {exc})") from exc
