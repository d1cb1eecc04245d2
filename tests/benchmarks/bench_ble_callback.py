"""Per-advert cost of the BLE detection callback (`AdvertPipeline.on_advert`) by path.

- unpaired: a phone's advert, dropped by the first lookup (target <= 5 us);
- paired, unchanged: a sensor repeating its last payload, not decoded (target <= 10 us);
- paired, decoded: per family, adverts that differ each time (a packet id, frame counter or
  spare byte varies; values stay put, as in a steady room), beside the decoder library's own
  `update()` on the same adverts in the same run (our overhead target <= 25 % on top).

The library is timed as Home Assistant calls it, on ready-made BluetoothServiceInfoBleak
objects; everything else (building that object, the duplicate check, the clock, mapping,
the reporting policy, emitting) is ours. Best of several rounds, GC paused while timing.
Figures, not assertions: `make bench` prints them beside their targets.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence
from typing import Any

from bleak.backends.device import BLEDevice
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from habluetooth import BluetoothServiceInfoBleak

from drivers.ble.decoders import library_decoder
from drivers.ble.pipeline import AdvertPipeline, PairedDevice
from drivers.ble.policy import ReportPolicy
from hub.clock import SystemClock
from hub.config import ReportSection
from hub.events import Reading
from tests import ble_vectors as vectors

TARGET_UNPAIRED_US = 5.0
TARGET_UNCHANGED_US = 10.0
TARGET_OVERHEAD_PCT = 25.0

Advert = tuple[str, str | None, int, dict[int, bytes], dict[str, bytes], list[str]]


def callback_costs(
    n_fast: int = 200_000, n_decoded: int = 20_000, rounds: int = 5
) -> dict[str, Any]:
    """Microseconds per advert for each path, and our overhead over each decoder library."""
    figures: dict[str, Any] = {}
    unpaired = _time_pipeline(
        _unpaired_adverts(n_fast), rounds, expect="unpaired", paired_address=PAIRED_ADDRESS
    )
    figures["unpaired_us"] = _us(unpaired)
    unchanged = _time_pipeline(_unchanged_adverts(n_fast), rounds, expect="unchanged")
    figures["paired_unchanged_us"] = _us(unchanged)
    for label, family, adverts, bindkey in _decoded_workloads(n_decoded):
        ours = _time_pipeline(adverts, rounds, expect="decoded", family=family, bindkey=bindkey)
        library = _time_library(adverts, rounds, family=family, bindkey=bindkey)
        figures[f"{label}_decoded_us"] = _us(ours)
        figures[f"{label}_library_us"] = _us(library)
        figures[f"{label}_overhead_pct"] = round((ours / library - 1.0) * 100.0, 1)
    figures["targets"] = (
        f"unpaired <= {TARGET_UNPAIRED_US} us, unchanged <= {TARGET_UNCHANGED_US} us,"
        f" decoded overhead <= {TARGET_OVERHEAD_PCT} %"
    )
    return figures


# --- workloads ----------------------------------------------------------------------------

PAIRED_ADDRESS = "54:48:E6:8F:80:A5"


def _unpaired_adverts(n: int) -> list[Advert]:
    # A phone: Apple manufacturer data, a name; never paired.
    advert: Advert = (
        "4C:11:22:33:44:55",
        "iPhone",
        -70,
        {76: b"\x10\x05\x01\x18\x4a\x2b\x7c"},
        {},
        [],
    )
    return [advert] * n


def _unchanged_adverts(n: int) -> list[Advert]:
    v = vectors.BY_KEY["bthome-shelly-ht"]
    advert: Advert = (
        PAIRED_ADDRESS,
        v.name,
        -60,
        dict(v.manufacturer_data),
        dict(v.service_data),
        list(v.service_uuids),
    )
    return [advert] * n


def _varied(
    key: str, n: int, vary: Callable[[bytes, int], bytes], in_service_data: bool
) -> list[Advert]:
    v = vectors.BY_KEY[key]
    adverts: list[Advert] = []
    for i in range(n):
        if in_service_data:
            ((uuid, payload),) = v.service_data.items()
            md, sd = dict(v.manufacturer_data), {uuid: vary(payload, i)}
        else:
            company = next(iter(v.manufacturer_data))
            md = dict(v.manufacturer_data)
            md[company] = vary(md[company], i)
            sd = dict(v.service_data)
        adverts.append((v.address, v.name, -60, md, sd, list(v.service_uuids)))
    return adverts


def _set_byte(index: int) -> Callable[[bytes, int], bytes]:
    def vary(payload: bytes, i: int) -> bytes:
        b = bytearray(payload)
        b[index] = i % 256
        return bytes(b)

    return vary


def _bthome_encrypted(n: int) -> list[Advert]:
    """Shelly H&T readings (25.06 °C, 50.55 %) encrypted with rising counters, as the device
    sends them (BTHome v2: AES-CCM, nonce = MAC + UUID + device-info byte + counter)."""
    cipher = AESCCM(vectors.BTHOME_BINDKEY, tag_length=4)
    mac = bytes.fromhex(PAIRED_ADDRESS.replace(":", ""))
    plaintext = b"\x02\xca\x09\x03\xbf\x13"
    adverts: list[Advert] = []
    for i in range(n):
        counter = (1000 + i).to_bytes(4, "little")
        sealed = cipher.encrypt(mac + b"\xd2\xfc\x41" + counter, plaintext, None)
        payload = b"\x41" + sealed[:-4] + counter + sealed[-4:]
        adverts.append((PAIRED_ADDRESS, "SBHT-003C", -60, {}, {vectors.BTHOME_UUID: payload}, []))
    return adverts


def _decoded_workloads(n: int) -> list[tuple[str, str, list[Advert], bytes | None]]:
    in_sd, in_md = True, False
    return [
        # packet id (object 0x00's value) rises
        ("bthome", "bthome", _varied("bthome-shelly-ht", n, _set_byte(2), in_sd), None),
        ("bthome_encrypted", "bthome", _bthome_encrypted(n), vectors.BTHOME_BINDKEY),
        # MiBeacon frame counter
        ("xiaomi", "xiaomi", _varied("xiaomi-lywsdcgq", n, _set_byte(4), in_sd), None),
        # H5075: the sixth byte is not part of the reading
        ("govee", "govee", _varied("govee-h5075", n, _set_byte(5), in_md), None),
        # RuuviTag v5: measurement sequence number
        ("ruuvitag", "ruuvitag", _varied("ruuvitag-v5", n, _set_byte(16), in_md), None),
    ]


# --- timing -------------------------------------------------------------------------------


def _time_pipeline(
    adverts: Sequence[Advert],
    rounds: int,
    *,
    expect: str,
    family: str = "bthome",
    bindkey: bytes | None = None,
    paired_address: str | None = None,
) -> float:
    """Best seconds per advert through a fresh pipeline: 20 paired sensors, the default
    reporting policy, an emit that keeps the Readings as a runtime queue would."""
    best = float("inf")
    report = ReportSection()
    for _ in range(rounds):
        others = [
            PairedDevice(f"other-{i}", f"A4:C1:38:00:00:{i:02X}", "bthome", None) for i in range(19)
        ]
        address = paired_address or address_of(adverts)
        paired = PairedDevice("bench", address, family, bindkey)
        out: list[Reading] = []
        pipeline = AdvertPipeline(
            [paired, *others], out.append, SystemClock(), ReportPolicy.from_config(report)
        )
        on_advert = pipeline.on_advert
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for address, name, rssi, md, sd, uuids in adverts:
                on_advert(address, name, rssi, md, sd, uuids)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        _check(pipeline, adverts, expect)
        best = min(best, elapsed / len(adverts))
    return best


def _time_library(
    adverts: Sequence[Advert], rounds: int, *, family: str, bindkey: bytes | None
) -> float:
    """Best seconds per advert for the library's update() alone, on prebuilt service infos."""
    device = BLEDevice(address_of(adverts), None, None)
    infos = [
        BluetoothServiceInfoBleak(
            name or address,
            address,
            rssi,
            md,
            sd,
            uuids,
            "bench",
            device,
            None,
            False,
            float(i),
            None,
        )
        for i, (address, name, rssi, md, sd, uuids) in enumerate(adverts)
    ]
    best = float("inf")
    for _ in range(rounds):
        update = library_decoder(family, bindkey).update  # a fresh library object per round
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for info in infos:
                update(info)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed / len(infos))
    return best


def address_of(adverts: Sequence[Advert]) -> str:
    return adverts[0][0]


def _check(pipeline: AdvertPipeline, adverts: Sequence[Advert], expect: str) -> None:
    """Refuse to report a figure for a path the adverts did not take."""
    stats = pipeline.stats
    n = len(adverts)
    ok = {
        "unpaired": stats.unpaired == n,
        "unchanged": stats.unchanged == n - 1 and stats.decoded == 1,
        "decoded": stats.decoded == n and stats.no_values == 0,
    }[expect]
    if not ok or stats.bad_adverts or stats.internal_errors:
        raise RuntimeError(f"benchmark adverts did not take the {expect} path: {stats}")


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 3)


if __name__ == "__main__":
    for key, value in callback_costs().items():
        print(f"{key:32} {value}")
