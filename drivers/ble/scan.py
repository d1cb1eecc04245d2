"""What BLE devices are nearby and what they say: the library behind `hearth sensors scan`,
on which the installer's pairing builds.

Each device's latest advert is decoded once with the standard decoders (with its bindkey if
it is paired), only when its payload changed, so a short scan in a busy street stays cheap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from drivers.ble.decoders import decode_once
from drivers.ble.pipeline import PairedDevice
from drivers.ble.scanner import (
    ACTIVE,
    BluetoothUnavailable,
    BluezWatch,
    plan_scan,
    start_scanner,
    stop_scanner,
)

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

log = logging.getLogger(__name__)

__all__ = ["BluetoothUnavailable", "ScanResult", "scan_nearby"]


@dataclass
class ScanResult:
    """One nearby device as last heard."""

    address: str
    name: str | None
    family: str | None  # the decoder family that recognises it; None for anything else
    rssi: int | None
    paired: bool
    sensor_id: str | None = None  # the config's id when paired
    values: dict[str, float] = field(default_factory=dict)  # quantity name -> last value
    adverts: int = 0
    needs_bindkey: bool = False  # encrypted, and no (or a wrong) bindkey for it

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "family": self.family,
            "rssi": self.rssi,
            "paired": self.paired,
            "sensor_id": self.sensor_id,
            "values": dict(self.values),
            "adverts": self.adverts,
            "needs_bindkey": self.needs_bindkey,
        }


UpdateCallback = Callable[[list[ScanResult]], None]
_Payload = tuple[str | None, tuple[tuple[int, bytes], ...], tuple[tuple[str, bytes], ...]]


class _Nearby:
    """Collects what bleak hears, decoding a device's advert only when its payload changed."""

    def __init__(self, paired: Mapping[str, PairedDevice]) -> None:
        self.paired = {address.upper(): device for address, device in paired.items()}
        self.results: dict[str, ScanResult] = {}
        self._payloads: dict[str, _Payload] = {}
        self.changed = False

    def heard(self, device: BLEDevice, adv: AdvertisementData) -> None:
        address = device.address.upper()
        result = self.results.get(address)
        pairing = self.paired.get(address)
        if result is None:
            result = ScanResult(
                address,
                adv.local_name,
                None,
                adv.rssi,
                pairing is not None,
                None if pairing is None else pairing.sensor_id,
            )
            self.results[address] = result
        result.adverts += 1
        result.rssi = adv.rssi
        result.name = adv.local_name or result.name
        self.changed = True
        payload: _Payload = (
            adv.local_name,
            tuple(sorted(adv.manufacturer_data.items())),
            tuple(sorted(adv.service_data.items())),
        )
        if self._payloads.get(address) == payload:
            return
        self._payloads[address] = payload
        self._decode(result, adv, None if pairing is None else pairing.bindkey)

    def _decode(self, result: ScanResult, adv: AdvertisementData, key: bytes | None) -> None:
        try:
            decoded = decode_once(
                result.address,
                adv.local_name,
                adv.rssi,
                adv.manufacturer_data,
                adv.service_data,
                adv.service_uuids,
                bindkey=key,
            )
        except Exception:  # it promises not to raise; a stranger's advert must not end the scan
            log.debug("could not decode an advert from %s", result.address, exc_info=True)
            return
        if decoded is None:  # no decoder family recognises it (a phone, a headset...)
            return
        result.family = decoded.family
        result.needs_bindkey = decoded.needs_bindkey
        result.values.update({str(q): float(v) for q, v in decoded.values.items()})
        result.name = result.name or decoded.name

    def snapshot(self) -> list[ScanResult]:
        """Paired first, then recognised families, then by signal strength."""
        return sorted(
            (replace(r, values=dict(r.values)) for r in self.results.values()),
            key=lambda r: (not r.paired, r.family is None, -(r.rssi or -999), r.address),
        )


async def scan_nearby(
    seconds: float,
    paired: Mapping[str, PairedDevice],
    scan_mode: str = ACTIVE,
    on_update: UpdateCallback | None = None,
    *,
    adapter: str | None = None,
    update_every_s: float = 0.5,
    timeout_s: float = 20.0,
) -> list[ScanResult]:
    """Scan for `seconds` and return every device heard. `paired` maps address -> device.

    Active by default: an installer wants names and Govee's scan responses. `on_update`
    gets the devices so far at most every `update_every_s`, when something changed.
    Raises BluetoothUnavailable (a one-line reason) when there is no bus, BlueZ or adapter,
    or when one of them goes away during the scan.
    """
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    nearby = _Nearby(paired)
    plan = plan_scan(scan_mode, [None])  # listen for every family we can decode
    watch = await BluezWatch.open(adapter)
    try:
        started = await start_scanner(nearby.heard, plan, watch.adapter, timeout_s)
        try:
            if started.fallback is not None:
                log.warning("passive scanning refused (%s); scanning actively", started.fallback)
            await _collect(nearby, watch, seconds, on_update, update_every_s)
        finally:
            await stop_scanner(started.scanner, timeout_s)
    finally:
        watch.close()
    results = nearby.snapshot()
    if on_update is not None:
        on_update(results)
    return results


async def _collect(
    nearby: _Nearby,
    watch: BluezWatch,
    seconds: float,
    on_update: UpdateCallback | None,
    every_s: float,
) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    trouble = asyncio.ensure_future(watch.trouble())
    try:
        while (left := end - loop.time()) > 0:
            done, _ = await asyncio.wait({trouble}, timeout=min(left, every_s))
            if done:
                raise BluetoothUnavailable(f"{trouble.result()} during the scan")
            if on_update is not None and nearby.changed:
                nearby.changed = False
                on_update(nearby.snapshot())
    finally:
        trouble.cancel()
