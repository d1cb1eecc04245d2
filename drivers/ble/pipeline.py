"""The detection callback's hot path: from one advert to zero or more Readings.

Every advert bleak hears comes through `AdvertPipeline.on_advert`, phones and headphones
included, so the order of the checks is the design:

1. not paired: one dict lookup, count, return;
2. paired, payload (manufacturer and service data) byte-identical to the last one from that
   address: note that the device was heard, no decoding;
3. otherwise decode with the device's own decoder (one per device, for life: they hold
   packet-id and encryption-counter state) and hand each fresh value to the reporting policy.

Readings carry the clock's stamp at reception. RSSI and battery are kept as sensor health and
also offered to the policy like any other value. Transient events (a button press, a motion
trigger) bypass the policy: each one is a Reading, and none is ever repeated by a heartbeat.
Nothing raises out of `on_advert`. A malformed advert is counted, logged (rate-limited) and
changes nothing else: no Reading, not even its RSSI, and the device is not "heard" by it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from drivers.base import Emit
from drivers.ble.decoders import FAMILIES, DeviceDecoder, identify_family, limit_decoder_logs
from drivers.ble.policy import ReportPolicy
from hub.clock import Clock
from hub.events import Quantity, Reading, Stamp

_log = logging.getLogger(__name__)

_RSSI_MIN, _RSSI_MAX = -126, 20  # -127 is "no RSSI" to habluetooth
_RSSI = Quantity.RSSI  # module constants: enum attribute lookups add up on the hot path
_BATTERY = Quantity.BATTERY

# What a payload turned out to be; a byte-identical repeat is counted the same way.
_DECODED, _BAD, _UNRECOGNISED = 0, 1, 2


@dataclass(frozen=True)
class PairedDevice:
    sensor_id: str
    address: str  # upper-case MAC "AA:BB:CC:DD:EE:FF", as bleak reports it on BlueZ
    family: str | None  # "bthome" | "xiaomi" | "govee" | "ruuvitag"; None: recognise the advert
    bindkey: bytes | None  # encrypted BTHome v2 / Xiaomi


@dataclass
class PipelineStats:
    """Counters since start. Every paired advert ends in exactly one of unchanged,
    unrecognised, bad_adverts or decoded, so they add up to the paired adverts seen. A repeat
    of the last payload is never decoded again: it counts as what that payload was."""

    unpaired: int = 0  # dropped by the first lookup
    unchanged: int = 0  # paired, payload identical to the last (good) one: not decoded
    unrecognised: int = 0  # paired without a family, and no decoder recognised the advert
    bad_adverts: int = 0  # the decoder raised, or gave a value no sensor could report
    decoded: int = 0  # went through the decoder library without error
    no_values: int = 0  # of those, nothing new we could use (replayed, empty, unknown frame)
    unmapped_values: int = 0  # decoded values with no Quantity of ours (acceleration, VOC...)
    unusable_values: int = 0  # values the library gave as None or text ("error")
    events: int = 0  # button presses and motion triggers emitted
    readings_emitted: int = 0
    suppressed_by_policy: int = 0
    emit_errors: int = 0  # the emit callable raised
    internal_errors: int = 0  # a bug of ours, caught so the callback still never raises

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class SensorHealth:
    sensor_id: str
    address: str
    family: str | None  # as paired, or as recognised from its adverts
    last_heard_monotonic: float | None
    last_heard_wall: float | None
    last_rssi: int | None
    last_battery: float | None
    adverts: int  # adverts heard since start, unchanged ones included, bad ones not


class RateLimitedLog:
    """At most `per_window` messages per window of real time; the next message after a
    window that dropped some says how many. A noise storm costs a few lines, not a disk."""

    def __init__(
        self,
        logger: logging.Logger,
        per_window: int = 5,
        window_s: float = 60.0,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._per_window = per_window
        self._window_s = window_s
        self._now = now
        self._window_start = -math.inf
        self._logged = 0
        self._dropped = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._now()
        if now - self._window_start >= self._window_s:
            if self._dropped:
                self._logger.warning(
                    "%d more like this in the last %.0f s were not logged",
                    self._dropped,
                    now - self._window_start,
                )
            self._window_start = now
            self._logged = self._dropped = 0
        if self._logged < self._per_window:
            self._logged += 1
            self._logger.warning(msg, *args)
        else:
            self._dropped += 1


class _Device:
    """A paired device's live state. Mutable and private; health() hands out snapshots."""

    __slots__ = (
        "address",
        "adverts",
        "battery",
        "bindkey",
        "decoder",
        "due",
        "family",
        "heard_monotonic",
        "heard_wall",
        "last_manufacturer_data",
        "last_outcome",
        "last_service_data",
        "rssi",
        "sensor_id",
        "values",
    )

    def __init__(self, paired: PairedDevice) -> None:
        self.sensor_id = paired.sensor_id
        self.address = paired.address
        self.family = paired.family
        self.bindkey = paired.bindkey
        self.decoder = (
            DeviceDecoder(paired.family, paired.address, paired.bindkey) if paired.family else None
        )
        self.last_manufacturer_data: Mapping[int, bytes] | None = None
        self.last_service_data: Mapping[str, bytes] | None = None
        self.last_outcome = _DECODED  # what the last payload turned out to be
        self.values: dict[Quantity, float] = {}  # latest of each state quantity, for heartbeats
        self.due = math.inf  # when the policy next wants a heartbeat from this sensor
        self.heard_monotonic: float | None = None
        self.heard_wall: float | None = None
        self.rssi: int | None = None
        self.battery: float | None = None
        self.adverts = 0


class AdvertPipeline:
    """Turns adverts from paired devices into Readings, via `emit` only."""

    def __init__(
        self,
        devices: Iterable[PairedDevice],
        emit: Emit,
        clock: Clock,
        policy: ReportPolicy,
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._policy = policy
        self.stats = PipelineStats()
        self._bad_log = RateLimitedLog(_log)
        self._stamp: Stamp | None = None
        self._by_address: dict[str, _Device] = {}
        self._by_sensor: dict[str, _Device] = {}
        for paired in devices:
            address = paired.address.upper()
            if paired.family is not None and paired.family not in FAMILIES:
                raise ValueError(
                    f"sensor {paired.sensor_id}: unknown BLE family {paired.family!r}"
                    f" (known: {', '.join(FAMILIES)})"
                )
            if address in self._by_address:
                raise ValueError(
                    f"sensors {self._by_address[address].sensor_id} and {paired.sensor_id}"
                    f" are both paired to {address}"
                )
            if paired.sensor_id in self._by_sensor:
                raise ValueError(f"sensor {paired.sensor_id} is paired twice")
            device = _Device(PairedDevice(paired.sensor_id, address, paired.family, paired.bindkey))
            self._by_address[address] = device
            self._by_sensor[paired.sensor_id] = device
        limit_decoder_logs()

    def on_advert(
        self,
        address: str,
        name: str | None,
        rssi: int | None,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        service_uuids: Sequence[str],
    ) -> None:
        """bleak's detection callback, in the scanner's words. Never raises."""
        device = self._by_address.get(address)
        if device is None:
            self.stats.unpaired += 1
            return
        try:
            now = self._clock.monotonic()
            self._stamp = None  # taken from the clock when this advert first stores something
            if (
                manufacturer_data == device.last_manufacturer_data
                and service_data == device.last_service_data
            ):
                outcome = device.last_outcome
                if outcome == _DECODED:
                    self.stats.unchanged += 1
                elif outcome == _BAD:
                    self.stats.bad_adverts += 1
                    return
                else:
                    self.stats.unrecognised += 1
            else:
                # Copies: the caller may reuse its dicts, and a later mutation must not make
                # a changed payload look identical.
                device.last_manufacturer_data = dict(manufacturer_data)
                device.last_service_data = dict(service_data)
                outcome = device.last_outcome = self._decode(
                    device, now, name, rssi, manufacturer_data, service_data, service_uuids
                )
                if outcome == _BAD:
                    return

            device.adverts += 1
            device.heard_monotonic = now
            device.heard_wall = self._clock.wall()
            if rssi is not None and _RSSI_MIN <= rssi <= _RSSI_MAX:
                device.rssi = rssi
                device.values[_RSSI] = float(rssi)
            else:
                rssi = None
            if now >= device.due:
                self._offer(device, device.values.items(), now)
                device.due = self._policy.due_at(device.sensor_id)
            elif rssi is not None:
                self._offer(device, ((_RSSI, float(rssi)),), now)
        except Exception as exc:
            self.stats.internal_errors += 1
            self._bad_log.warning(
                "BLE advert from %s (%s) could not be handled: %r", address, device.sensor_id, exc
            )

    def health(self) -> dict[str, SensorHealth]:
        return {
            sensor_id: SensorHealth(
                sensor_id,
                device.address,
                device.decoder.family if device.decoder else device.family,
                device.heard_monotonic,
                device.heard_wall,
                device.rssi,
                device.battery,
                device.adverts,
            )
            for sensor_id, device in self._by_sensor.items()
        }

    def decoder(self, sensor_id: str) -> DeviceDecoder | None:
        """The device's decoder (None until a family is known): diagnostics and tests."""
        device = self._by_sensor.get(sensor_id)
        return device.decoder if device else None

    # --- internals ------------------------------------------------------------------------

    def _decode(
        self,
        device: _Device,
        now: float,
        name: str | None,
        rssi: int | None,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        service_uuids: Sequence[str],
    ) -> int:
        stats = self.stats
        decoder = device.decoder
        if decoder is None:
            family = identify_family(name, manufacturer_data, service_data, service_uuids)
            if family is None:
                stats.unrecognised += 1
                return _UNRECOGNISED
            decoder = device.decoder = DeviceDecoder(family, device.address, device.bindkey)
            _log.info("BLE sensor %s recognised as %s", device.sensor_id, family)
        try:
            states, events, unmapped, unusable = decoder.decode(
                name, rssi, manufacturer_data, service_data, service_uuids, now
            )
        except Exception as exc:
            stats.bad_adverts += 1
            self._bad_log.warning(
                "bad BLE advert from %s (%s, %s): %r",
                device.address,
                device.sensor_id,
                decoder.family,
                exc,
            )
            return _BAD
        stats.decoded += 1
        if unmapped:
            stats.unmapped_values += unmapped
        if unusable:
            stats.unusable_values += unusable
        if not states and not events:
            stats.no_values += 1
            return _DECODED
        values = device.values
        for quantity, value in states:
            values[quantity] = value
            if quantity is _BATTERY:
                device.battery = value
        self._offer(device, states, now)
        for quantity in events:
            stats.events += 1
            self._emit_reading(Reading(device.sensor_id, quantity, 1.0, self._advert_stamp()))
        return _DECODED

    def _offer(self, device: _Device, values: Iterable[tuple[Quantity, float]], now: float) -> None:
        """Hand values to the reporting policy; emit those it wants stored."""
        should_store = self._policy.should_store
        sensor_id = device.sensor_id
        suppressed = 0
        for quantity, value in values:
            if should_store(sensor_id, quantity, value, now):
                self._emit_reading(Reading(sensor_id, quantity, value, self._advert_stamp()))
                if device.due == math.inf:
                    device.due = self._policy.due_at(sensor_id)
            else:
                suppressed += 1
        self.stats.suppressed_by_policy += suppressed

    def _advert_stamp(self) -> Stamp:
        """One stamp per advert, shared by all its Readings. Taken lazily: most adverts
        store nothing, and a Stamp costs more than the rest of the unchanged path."""
        stamp = self._stamp
        if stamp is None:
            stamp = self._stamp = self._clock.stamp()
        return stamp

    def _emit_reading(self, reading: Reading) -> None:
        try:
            self._emit(reading)
        except Exception as exc:
            self.stats.emit_errors += 1
            self._bad_log.warning("could not hand on a BLE reading %s: %r", reading, exc)
        else:
            self.stats.readings_emitted += 1


__all__ = [
    "AdvertPipeline",
    "PairedDevice",
    "PipelineStats",
    "RateLimitedLog",
    "SensorHealth",
]
