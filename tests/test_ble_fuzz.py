"""Fuzz the advert pipeline: random and mutated payloads, from paired devices of every family.

Each hypothesis example carries a batch of adverts, so hypothesis's own overhead stays small
next to the decoders. An advert starts from a real vector (tests/ble_vectors.py) and is
mutated: bit flips, truncation, extension, wholesale replacement, extra service-data UUIDs and
manufacturer ids, dropped keys. It goes to its own device, to a device of another family, to
a device paired without a family, or to no paired device at all. Whatever arrives, nothing may
escape `on_advert`, nothing may reach the pipeline's last-resort handler (that would be a bug
of ours swallowed), every advert is accounted for, and what is emitted is sane.

The total is HEARTH_FUZZ_PAYLOADS (default 100,000).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ble.decoders import PLAUSIBLE
from drivers.ble.pipeline import AdvertPipeline, PairedDevice
from drivers.ble.policy import ReportPolicy
from hub.events import Quantity, Reading
from tests import ble_vectors as V
from tests.test_ble_pipeline import ManualClock

PAYLOADS = int(os.environ.get("HEARTH_FUZZ_PAYLOADS", "100000"))
BATCH = 50
EXAMPLES = max(1, math.ceil(PAYLOADS / BATCH))

SEEDS = [*V.ALL, V.RUUVI_E1_MAX]
UNPAIRED = "4C:11:22:33:44:55"
FAMILY_UNKNOWN = [f"F0:00:00:00:00:{i:02X}" for i in range(4)]


def _paired_devices() -> list[PairedDevice]:
    """One device per address in the vectors (with its family and any bindkey used there),
    and a few paired without a family, to be recognised from whatever they send."""
    by_address: dict[str, PairedDevice] = {}
    for v in SEEDS:
        known = by_address.get(v.address)
        bindkey = v.bindkey or (known.bindkey if known else None)
        by_address[v.address] = PairedDevice(f"s-{v.address}", v.address, v.family, bindkey)
    unknown = [PairedDevice(f"u-{a}", a, None, V.BTHOME_BINDKEY) for a in FAMILY_UNKNOWN]
    return [*by_address.values(), *unknown]


DEVICES = _paired_devices()
ADDRESSES = [d.address for d in DEVICES]
KNOWN_UUIDS = [V.BTHOME_UUID, V.MIBEACON_UUID, V.GOVEE_UUID,
               "0000181c-0000-1000-8000-00805f9b34fb", "0000181e-0000-1000-8000-00805f9b34fb",
               "0000fd50-0000-1000-8000-00805f9b34fb", "0000181b-0000-1000-8000-00805f9b34fb",
               "0000181d-0000-1000-8000-00805f9b34fb"]  # fmt: skip
KNOWN_COMPANIES = [V.RUUVI_COMPANY, 0x004C, 0xEC88, 0xEF88, 0x0001, 0x8801, 0x8803, 0x8843]

uuids = st.one_of(
    st.sampled_from(KNOWN_UUIDS),
    st.integers(0, 0xFFFF).map(lambda x: f"0000{x:04x}-0000-1000-8000-00805f9b34fb"),
    st.uuids().map(str),
)
companies = st.one_of(st.sampled_from(KNOWN_COMPANIES), st.integers(0, 0xFFFF))
junk = st.binary(max_size=32)
mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 63), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 40)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("replace"), junk),
    st.tuples(st.just("uuid"), uuids, junk),
    st.tuples(st.just("company"), companies, junk),
    st.tuples(st.just("drop"), st.integers(0, 3)),
)
adverts = st.tuples(
    st.integers(0, len(SEEDS) - 1),  # which real vector to start from
    st.integers(0, 9),  # where it goes (see _build)
    st.lists(mutations, max_size=4),
    st.sampled_from([-60, -90, -127, None]),
)
batches = st.lists(adverts, min_size=BATCH, max_size=BATCH)


def _mutate(payload: bytes, op: tuple[Any, ...]) -> bytes:
    kind = op[0]
    if kind == "flip" and payload:
        b = bytearray(payload)
        b[op[1] % len(b)] ^= 1 << op[2]
        return bytes(b)
    if kind == "truncate":
        return payload[: op[1] % (len(payload) + 1)]
    if kind == "extend":
        return payload + bytes(op[1])
    if kind == "replace":
        return bytes(op[1])
    return payload


def _build(advert: tuple[Any, ...]) -> tuple[str, str | None, int | None, dict[int, bytes],
                                             dict[str, bytes], list[str]]:  # fmt: skip
    seed_index, target, ops, rssi = advert
    seed = SEEDS[seed_index]
    md, sd = dict(seed.manufacturer_data), dict(seed.service_data)
    for op in ops:
        kind = op[0]
        if kind == "uuid":
            sd[op[1]] = op[2]
        elif kind == "company":
            md[op[1]] = op[2]
        elif kind == "drop":
            keys = [*md, *sd]
            if keys:
                key = keys[op[1] % len(keys)]
                if isinstance(key, int):
                    del md[key]
                else:
                    del sd[key]
        else:  # a byte-level mutation of one payload already there
            if sd:
                uuid = next(iter(sd))
                sd[uuid] = _mutate(sd[uuid], op)
            elif md:
                company = next(iter(md))
                md[company] = _mutate(md[company], op)
    if target == 7:  # a device of another family, maybe
        address = ADDRESSES[(seed_index * 7 + len(ops)) % len(ADDRESSES)]
    elif target == 8:  # a device paired without a family
        address = FAMILY_UNKNOWN[seed_index % len(FAMILY_UNKNOWN)]
    elif target == 9:  # nobody's
        address = UNPAIRED
    else:  # its own device
        address = seed.address
    return address, seed.name, rssi, md, sd, list(seed.service_uuids)


def _check_reading(reading: Reading, clock: ManualClock, sensor_ids: set[str]) -> None:
    assert reading.sensor_id in sensor_ids
    assert isinstance(reading.quantity, Quantity)
    value = reading.value
    assert isinstance(value, float) and math.isfinite(value)
    quantity = reading.quantity
    if quantity.is_binary:
        assert value in (0.0, 1.0)
    elif quantity is Quantity.RSSI:
        assert -126 <= value <= 20
    else:
        low, high = PLAUSIBLE[quantity]
        assert low <= value <= high
    assert reading.stamp.monotonic == clock.t


def test_fuzzed_adverts_never_escape_and_are_all_accounted_for() -> None:
    totals: Counter[str] = Counter()
    sensor_ids = {d.sensor_id for d in DEVICES}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=batches)
    def run(batch: list[tuple[Any, ...]]) -> None:
        clock = ManualClock()
        readings: list[Reading] = []
        policy = ReportPolicy(900.0, {Quantity.TEMPERATURE: 0.2, Quantity.RSSI: 10.0})
        pipeline = AdvertPipeline(DEVICES, readings.append, clock, policy)
        for advert in batch:
            clock.advance(0.5)
            before = len(readings)
            pipeline.on_advert(*_build(advert))  # must not raise
            for reading in readings[before:]:
                _check_reading(reading, clock, sensor_ids)
        s = pipeline.stats
        assert s.internal_errors == 0 and s.emit_errors == 0
        assert s.unpaired + s.unchanged + s.unrecognised + s.bad_adverts + s.decoded == len(batch)
        totals.update(s.as_dict())
        totals["payloads"] += len(batch)

    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"\nfuzzed {totals['payloads']} adverts in {elapsed:.1f} s: {dict(totals)}")
    assert totals["payloads"] >= PAYLOADS
    for counter in ("bad_adverts", "decoded", "no_values", "unchanged", "unpaired"):
        assert totals[counter] > 0, f"the fuzz never produced a {counter} advert: {totals}"
