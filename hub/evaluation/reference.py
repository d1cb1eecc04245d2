"""Conditions that DESIGN.md's rules find in recorded data where nothing was injected.

A real flat can really be below 18 °C for hours, really damp, or really have a sensor that
went quiet: an alert then is right, not false. These reference labels (injected=False) let the
scoring tell the two apart on real homes, and count how many such episodes the checks caught.
Between readings up to 3 hours apart the value is taken to move in a straight line (so a 50-
minute hole between two readings above 90 % counts as above 90 %); before a longer gap the
last value counts for 10 minutes only.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from hub.evaluation.labels import Label

MAX_GAP_S = 3 * 3600.0  # readings further apart than this are not joined up
TAIL_S = 600.0  # the last value before a longer gap counts for this long
GRID_S = 300.0
COLD_C, COLD_FOR_S = 18.0, 2 * 3600.0
DAMP_WINDOW_S = 12 * 3600.0
DAMP_RULES = ((70.0, 2 * 3600.0), (90.0, 3600.0))  # above this RH for more than this, in 12 h
DAMP_EARLY_S = 1800.0
MISSED_INTERVALS = 3  # hub.config's sensor_silent default
SILENT_AT_LEAST_S = 3600.0

Series = Sequence[tuple[float, float]]  # (time, value) in time order


def spans_beyond(series: Series, threshold: float, *, above: bool) -> list[tuple[float, float]]:
    """When the value is above (or below) `threshold`, joining readings up to MAX_GAP_S apart
    by a straight line; merged into disjoint spans in time order."""
    sign = 1.0 if above else -1.0
    spans: list[tuple[float, float]] = []

    def add(a: float, b: float) -> None:
        if spans and a <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], b))
        elif b > a:
            spans.append((a, b))

    for (t0, v0), (t1, v1) in itertools.pairwise(series):
        in0, in1 = sign * (v0 - threshold) > 0, sign * (v1 - threshold) > 0
        if t1 - t0 > MAX_GAP_S:
            if in0:
                add(t0, t0 + TAIL_S)
            continue
        if in0 and in1:
            add(t0, t1)
        elif in0 or in1:
            cross = t0 + (threshold - v0) / (v1 - v0) * (t1 - t0)
            add(t0, cross) if in0 else add(cross, t1)
    return spans


def cold_episodes(series: Series) -> list[tuple[float, float, float]]:
    """(onset, met, end): below COLD_C from onset, for COLD_FOR_S by `met`, until `end`."""
    return [
        (a, a + COLD_FOR_S, b)
        for a, b in spans_beyond(series, COLD_C, above=False)
        if b - a >= COLD_FOR_S
    ]


def damp_episodes(series: Series) -> list[tuple[float, float]]:
    """(met, end) spans in which the time above a threshold within the last 12 h exceeds its
    limit (either rule), on a 5-minute grid."""
    if len(series) < 2:
        return []
    origin = series[0][0]
    by_rule = [spans_beyond(series, threshold, above=True) for threshold, _ in DAMP_RULES]
    last = max([series[-1][0], *(end for spans in by_rule for _, end in spans)])
    cells = int((last - origin) // GRID_S) + 1
    above = [[0.0] * cells for _ in DAMP_RULES]
    for rule, spans in enumerate(by_rule):
        for start, end in spans:
            first, final = int((start - origin) // GRID_S), int((end - origin) // GRID_S)
            for cell in range(first, min(final, cells - 1) + 1):
                low = max(start, origin + cell * GRID_S)
                high = min(end, origin + (cell + 1) * GRID_S)
                above[rule][cell] += max(0.0, high - low)
    width = int(DAMP_WINDOW_S // GRID_S)
    sums = [0.0] * len(DAMP_RULES)
    found: list[tuple[float, float]] = []
    met: float | None = None
    for cell in range(cells):
        holds = False
        for rule, (_, limit) in enumerate(DAMP_RULES):
            sums[rule] += above[rule][cell] - (above[rule][cell - width] if cell >= width else 0.0)
            holds = holds or sums[rule] > limit
        t = origin + (cell + 1) * GRID_S
        if holds and met is None:
            met = t
        elif not holds and met is not None:
            found.append((met, t))
            met = None
    if met is not None:
        found.append((met, origin + cells * GRID_S))
    return found


def silences(times: Sequence[float]) -> list[tuple[float, float, float]]:
    """(last heard, silent from, heard again): gaps of at least MISSED_INTERVALS of the
    sensor's usual (median) interval, and at least SILENT_AT_LEAST_S."""
    if len(times) < 3:
        return []
    usual = statistics.median(b - a for a, b in itertools.pairwise(times))
    limit = max(SILENT_AT_LEAST_S, MISSED_INTERVALS * usual)
    return [(a, a + limit, b) for a, b in itertools.pairwise(times) if b - a >= limit]


def reference_labels(
    home: str,
    temperature: Sequence[tuple[str, Series]],
    humidity: Sequence[tuple[str, Series]],
    heard: Sequence[tuple[str, Sequence[float]]] = (),
) -> list[Label]:
    """Labels for what the data itself shows: cold and damp episodes (each series with its
    sensor's room) and silent sensors (each sensor id with the times it was heard, sorted)."""
    labels: list[Label] = []
    # Cold is a home's condition: overlapping episodes in several rooms are one.
    cold = sorted((e, room) for room, series in temperature for e in cold_episodes(series))
    merged: list[tuple[float, float, float, set[str]]] = []
    for (onset, met, end), room in cold:
        if merged and onset <= merged[-1][2]:
            first, first_met, last, rooms = merged[-1]
            merged[-1] = (first, min(first_met, met), max(last, end), rooms | {room})
        else:
            merged.append((onset, met, end, {room}))
    for onset, met, end, rooms in merged:
        labels.append(
            Label(home, "rule_cold", met, end, ("cold_home",), onset=onset,
                  details={"rooms": sorted(rooms)}, injected=False)
        )  # fmt: skip
    for room, series in humidity:
        for met, end in damp_episodes(series):
            # How time between readings is counted moves `met` by minutes: an alert up to
            # DAMP_EARLY_S before it is still about this episode.
            labels.append(
                Label(home, "rule_damp", met, end, ("damp",), onset=met - DAMP_EARLY_S,
                      rooms=(room,), injected=False)
            )  # fmt: skip
    for sensor, times in heard:
        for last, silent, again in silences(times):
            labels.append(
                Label(home, "rule_silent", silent, again, ("sensor_silent",), onset=last,
                      sensor=sensor, injected=False)
            )  # fmt: skip
    return sorted(labels, key=lambda label: label.start)
