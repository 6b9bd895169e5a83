"""Log hygiene: one line per failure, a traceback at most once per kind per interval.

An outage makes every loop fail at once and again at every retry; a poison message
comes back thousands of times; a deeply nested payload makes a thousand-frame
traceback. None of that may drown the operator's log: failures are logged through
``Throttled``, which writes a short line each time and the traceback (cut to
``TRACEBACK_FRAMES`` frames) only the first time a (what, exception type) pair is
seen in ``interval`` seconds. Messages are cut to ``MAX_TEXT`` characters, so a
payload quoted in an exception never becomes a payload-sized log entry.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback

MAX_TEXT = 300
TRACEBACK_FRAMES = 12


def short(value: object, limit: int = MAX_TEXT) -> str:
    """``str(value)`` on one line, cut to ``limit`` characters."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        text = f"<unprintable {type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, short."""
    return f"{type(exc).__name__}: {short(exc)}"


def brief_traceback(exc: BaseException, frames: int = TRACEBACK_FRAMES) -> str:
    """The last ``frames`` frames of ``exc``'s traceback, each line cut short."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-frames,
                                       chain=False)
    return "".join(short(line.rstrip("\n"), 500) + "\n" for line in lines).rstrip()


class Throttled:
    """Failures of one logger, each logged as a line; tracebacks rate-limited."""

    def __init__(self, logger: logging.Logger, interval: float = 300.0):
        self.logger = logger
        self.interval = interval
        self._last: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _traceback_due(self, what: str, exc: BaseException) -> bool:
        key = (what, type(exc).__name__)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            self._last[key] = now
            if len(self._last) > 1000:     # bounded: kinds are few, but be safe
                self._last.clear()
            return True

    def failure(self, what: str, exc: BaseException, hint: str = "",
                level: int = logging.WARNING, with_traceback: bool = True) -> None:
        """Log ``what failed: Type: message. hint`` and, when due, the traceback."""
        line = f"{what} failed: {describe(exc)}" + (f". {hint}" if hint else "")
        if with_traceback and exc.__traceback__ is not None and \
                self._traceback_due(what, exc):
            line += "\n" + brief_traceback(exc)
        self.logger.log(level, "%s", line)


class LibraryHygiene(logging.Filter):
    """The same rules for records we do not write ourselves (oslo.messaging logs a
    full traceback for every message it cannot decode, with the payload in it).

    Installed on the root handlers by the commands: a record's message is cut to
    ``limit`` characters, and its traceback is cut to ``TRACEBACK_FRAMES`` frames and
    kept only the first time its (logger, exception type) is seen in ``interval`` s.
    """

    def __init__(self, interval: float = 300.0, limit: int = 2000):
        super().__init__()
        self.limit = limit
        self._due = Throttled(logging.getLogger(__name__), interval)._traceback_due

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            if self._due(record.name, exc):
                text = f"{short(text, self.limit)}\n{brief_traceback(exc)}"
            else:
                text = f"{short(text, self.limit)} ({describe(exc)}; traceback shown earlier)"
            record.exc_info, record.exc_text = None, None
        elif len(text) > self.limit:
            text = short(text, self.limit)
        else:
            return True
        record.msg, record.args = text, ()
        return True


def install_hygiene(logger: logging.Logger | None = None,
                    interval: float = 300.0) -> LibraryHygiene:
    """Put one ``LibraryHygiene`` on every handler of ``logger`` (the root)."""
    hygiene = LibraryHygiene(interval)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(hygiene)
    return hygiene
