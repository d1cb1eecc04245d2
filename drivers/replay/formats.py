"""Which reader reads a file: by the format asked for, or ("auto") by the file's first lines."""

from __future__ import annotations

import re
from collections.abc import Generator, Iterable
from itertools import islice
from pathlib import Path
from zoneinfo import ZoneInfo

from drivers.replay.casas import read_casas
from drivers.replay.jsonl import read_jsonl
from drivers.replay.records import Record, ReplayStats
from drivers.replay.series import read_series

FORMATS = ("casas", "series", "jsonl")
AUTO = "auto"

_SERIES_LINE = re.compile(r"\d+(?:\.\d+)?\s+[-+]?[\d.]+")
_CASAS_LINE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}[ T\t]+\d{1,2}:\d{2}:\d{2}\S*\s+\S+\s+\S+")
_SNIFF_LINES = 20
_NOT_DATA_SUFFIXES = frozenset({".md", ".rst", ".html", ".pdf", ".rdf", ".ttl"})
_NOT_DATA_PREFIXES = ("readme", "license", "licence", "copying")


def detect_format(path: Path | str) -> str | None:
    """ "casas", "series" or "jsonl" from the first data lines of a file; None if unsure."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = list(islice(handle, _SNIFF_LINES))
    except OSError:
        return None
    for line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("{"):
            return "jsonl"
        if _SERIES_LINE.fullmatch(text):
            return "series"
        if _CASAS_LINE.match(text):
            return "casas"
    return None


def expand_paths(paths: Iterable[Path | str]) -> list[Path]:
    """Files to replay: files as given, directories as their data files in name order
    (hidden files and documentation such as README.md or LICENSE.md left out)."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for child in sorted(path.iterdir()):
            name = child.name.lower()
            if (
                child.is_file()
                and not name.startswith(".")
                and not name.startswith(_NOT_DATA_PREFIXES)
                and child.suffix.lower() not in _NOT_DATA_SUFFIXES
            ):
                found.append(child)
    return found


def check_format(fmt: str) -> str:
    if fmt not in (*FORMATS, AUTO):
        raise ValueError(f"unknown replay format {fmt!r}: use one of {', '.join(FORMATS)} or auto")
    return fmt


def read_file(
    path: Path, fmt: str, tz: ZoneInfo, stats: ReplayStats
) -> Generator[Record, None, None]:
    """The records of one file in file order, whatever its format (closing it closes the file)."""
    check_format(fmt)
    name = str(path)
    if fmt == AUTO:
        detected = detect_format(path)
        if detected is None:
            if path.exists():
                stats.bad_file(name, "not a format replay knows (casas, series or jsonl)")
            else:
                stats.bad_file(name, "cannot read: no such file")
            return
        fmt = detected
    if fmt == "casas":
        yield from read_casas(name, tz, stats)
    elif fmt == "series":
        yield from read_series(name, stats)
    else:
        yield from read_jsonl(name, stats)
