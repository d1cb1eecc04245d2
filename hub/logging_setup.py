"""The hub's log: one structured line per record, fit for journald, and bounded in volume.

A line reads `level logger: message key=value ...`. On a terminal or a file it starts with a
local ISO 8601 timestamp. When stderr is journald's stream (systemd sets JOURNAL_STREAM to
that stream's `device:inode`), the timestamp is left out, since journald stamps each line
itself, and the line starts with the syslog priority `<N>`, which journald strips and stores,
so `journalctl -u hearth -p warning` works. Fields come from `extra=`: anything passed there
that a LogRecord does not already have is written as `key=value` after the message. Newlines
in messages, fields and tracebacks are escaped: one record is one line, and text that came in
over the radio cannot forge a second one.

Bounded volume: a RateLimitFilter on the handler lets each message (same logger and same
format string, whatever its arguments) through at most `burst` times per `window_s`; the rest
are counted and summed up in one "suppressed N similar messages" line per window. A storm of
radio noise or a council that refuses every request for a month therefore costs a few lines a
minute, not a full disk. journald's own rate limit would drop lines without saying which;
ours keeps the first lines of each storm and the count.

What must never be logged (personal data and secrets; reviewers check new log calls for it,
and tests/test_logging_setup.py greps a real run for them):
- the hub's name (it is often the resident's name or address) or any home address,
- BLE bindkeys, enrollment codes, bearer tokens, private keys or request signatures,
- reading values tied to a person beyond what a fault needs (a log is not the data channel).
Fine to log: sensor ids, rooms and roles, hub ids (random), MAC addresses of paired sensors,
sequence numbers, counts, URLs of the council, exception types and messages from our code.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

DEFAULT_BURST = 10
DEFAULT_WINDOW_S = 60.0
# Distinct message keys tracked at once. Keys are format strings, so there are only as many
# as there are log calls in the code; the cap is a guard against f-string messages.
MAX_KEYS = 2000
# Libraries that log a line per request or migration step; only --verbose shows them.
CHATTY_LOGGERS = ("httpx", "httpcore", "alembic", "bleak", "asyncio")

# syslog priorities (RFC 5424) by logging level.
_PRIORITY = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__
) | {"message", "asctime", "taskName"}
_SUMMARY_MARK = "_hearth_suppressed_summary"


def syslog_priority(levelno: int) -> int:
    for level, priority in _PRIORITY:
        if levelno >= level:
            return priority
    return _DEBUG_PRIORITY


def stderr_is_journald(
    stream: IO[str] | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """True when `stream` (default stderr) is the journald stream systemd connected us to.

    Compared by device and inode, as sd_journal_stream_fd(3) says: a child that inherited
    JOURNAL_STREAM but writes elsewhere (a pipe, a file) must not get journald's format.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat((sys.stderr if stream is None else stream).fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):  # unset, malformed, or not a real file
        return False


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _field(value: object) -> str:
    text = _escape(str(value))
    if text == "" or any(c in text for c in ' "='):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class LineFormatter(logging.Formatter):
    """`[timestamp |<priority>]level logger: message key=value...`, always one line."""

    def __init__(self, journald: bool) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"<{syslog_priority(record.levelno)}>{record.levelname}"
            if self.journald
            else f"{self._timestamp(record)} {record.levelname}",
            f"{record.name}: {_escape(record.getMessage())}",
        ]
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                parts.append(f"{key}={_field(value)}")
        if record.exc_info:
            parts.append(f"traceback={_field(self.formatException(record.exc_info))}")
        elif record.stack_info:
            parts.append(f"stack={_field(record.stack_info)}")
        return " ".join(parts)

    @staticmethod
    def _timestamp(record: logging.LogRecord) -> str:
        local = time.localtime(record.created)
        millis = int(record.created % 1 * 1000)
        return (
            time.strftime("%Y-%m-%dT%H:%M:%S", local)
            + f".{millis:03d}"
            + (time.strftime("%z", local))
        )


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0
    levelno: int = logging.DEBUG  # the highest level suppressed in this window
    logger: str = ""
    template: str = ""


class RateLimitFilter(logging.Filter):
    """Let each message key through `burst` times per `window_s`, then count.

    The key is (logger name, format string): "driver %s stopped" is one message whatever the
    driver. When a window with suppressed records ends, one summary record is handed to
    `sink` (normally the handler's `handle`), at the highest level that was suppressed, so a
    storm of errors still shows at `-p err`. Windows are checked on every record and by
    `flush()`, so a storm that stops still gets its summary line at the next record (or at
    exit). `clock` is injectable for tests.
    """

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window_s: float = DEFAULT_WINDOW_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sink: Callable[[logging.LogRecord], object] | None = None,
        max_keys: int = MAX_KEYS,
    ) -> None:
        super().__init__()
        if burst < 1 or window_s <= 0:
            raise ValueError("burst must be at least 1 and window_s positive")
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self.sink = sink
        self.max_keys = max_keys
        self.suppressed_total = 0
        self._windows: dict[tuple[str, str], _Window] = {}
        self._lock = threading.Lock()  # the hub logs from worker threads too (to_thread)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY_MARK, False):
            return True
        now = self.clock()
        key = (record.name, str(record.msg))
        with self._lock:
            summaries = self._expire(now)
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self.max_keys:
                    self._evict_oldest()
                window = self._windows[key] = _Window(now, logger=key[0], template=key[1])
            if window.passed < self.burst:
                window.passed += 1
                allowed = True
            else:
                window.suppressed += 1
                window.levelno = max(window.levelno, record.levelno)
                self.suppressed_total += 1
                allowed = False
        self._emit(summaries)
        return allowed

    def flush(self) -> None:
        """Write the summaries of all windows with suppressed records now (e.g. at exit)."""
        with self._lock:
            summaries = [self._summary(w, self.clock()) for w in self._windows.values()]
            self._windows.clear()
        self._emit([s for s in summaries if s is not None])

    def _expire(self, now: float) -> list[logging.LogRecord]:
        ended = [k for k, w in self._windows.items() if now - w.started >= self.window_s]
        summaries = [self._summary(self._windows.pop(k), now) for k in ended]
        return [s for s in summaries if s is not None]

    def _evict_oldest(self) -> None:
        oldest = min(self._windows, key=lambda k: self._windows[k].started)
        del self._windows[oldest]  # its count is lost; only reachable with f-string messages

    def _summary(self, window: _Window, now: float) -> logging.LogRecord | None:
        if window.suppressed == 0:
            return None
        record = logging.LogRecord(
            window.logger,
            window.levelno,
            __file__,
            0,
            "suppressed %d similar messages in %.0f s: %r",
            (window.suppressed, now - window.started, window.template),
            None,
        )
        setattr(record, _SUMMARY_MARK, True)
        return record

    def _emit(self, summaries: list[logging.LogRecord]) -> None:
        if self.sink is not None:
            for summary in summaries:
                self.sink(summary)


_installed: logging.Handler | None = None


def configure(
    verbose: bool,
    journald: bool | None = None,
    *,
    stream: IO[str] | None = None,
    burst: int = DEFAULT_BURST,
    window_s: float = DEFAULT_WINDOW_S,
    clock: Callable[[], float] = time.monotonic,
) -> logging.Handler:
    """Send the process's logging to `stream` (default stderr) as described above; returns
    the handler. Called once by the CLI; calling again replaces the handler it installed.

    `journald` None means detect it (stderr_is_journald). Debug lines only with `verbose`;
    the chatty libraries (CHATTY_LOGGERS) only say warnings unless `verbose`.
    """
    global _installed
    out = sys.stderr if stream is None else stream
    on_journald = stderr_is_journald(out) if journald is None else journald
    handler = logging.StreamHandler(out)
    handler.setFormatter(LineFormatter(journald=on_journald))
    limiter = RateLimitFilter(burst, window_s, clock=clock, sink=handler.handle)
    handler.addFilter(limiter)
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
        _flush_limiter(_installed)
    else:
        atexit.register(_flush_installed)
    for old in [h for h in root.handlers if type(h) is logging.StreamHandler]:
        root.removeHandler(old)  # a basicConfig() handler would print every line twice
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.WARNING)
    logging.captureWarnings(True)
    _installed = handler
    return handler


def limiter_of(handler: logging.Handler) -> RateLimitFilter | None:
    for f in handler.filters:
        if isinstance(f, RateLimitFilter):
            return f
    return None


def _flush_limiter(handler: logging.Handler) -> None:
    limiter = limiter_of(handler)
    if limiter is not None:
        limiter.flush()


def _flush_installed() -> None:
    handler = _installed
    if handler is None:
        return
    # At exit the stream may already be closed (a test runner's capture, a closed pipe):
    # the summaries have nowhere to go then, and logging would print a traceback.
    stream = getattr(handler, "stream", None)
    if stream is not None and getattr(stream, "closed", False):
        return
    _flush_limiter(handler)


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call, checked: a key that clashes with a LogRecord attribute would
    make logging raise at the call, in production, so fail loudly here instead."""
    clash = _STANDARD_ATTRS.intersection(values)
    if clash:
        raise KeyError(f"log field names taken by logging itself: {sorted(clash)}")
    return values
