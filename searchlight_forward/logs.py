"""Log hygiene: one line per failure, a traceback at most once per kind per interval.

An outage makes every loop fail at once and again at every retry; a poison message
comes back thousands of times; a deeply nested payload makes a thousand-frame
traceback. None of that may drown the operator's log: failures are logged through
``Throttled``, which writes a short line each time and the traceback (cut to
``TRACEBACK_FRAMES`` frames) only the first time a (what, exception type) pair is
seen in ``interval`` seconds. Messages are cut to ``MAX_TEXT`` characters, so a
payload quoted in an exception never becomes a payload-sized log entry.

Every command's one logging set-up (``commands.common.setup``) also installs
``install_hygiene`` on the root handlers: every record, ours or a library's, keeps
at most ``MAX_LINES`` lines, and no line written (prefix included) is longer than
``MAX_LINE`` characters; and it sets the client libraries' loggers
(``LIBRARY_LEVELS``) so that a search server outage or every request is not a line.
"""
from __future__ import annotations

import logging
import threading
import time
import traceback

MAX_TEXT = 300
TRACEBACK_FRAMES = 12
MAX_LINE = 2000          # characters of one written line, the formatter's prefix included
MAX_LINES = 40           # lines of one record (a brief traceback fits)
PREFIX_ROOM = 400        # of MAX_LINE, kept for a line's prefix and an exception's text

# Client libraries' loggers, for oslo.log's ``default_log_levels``. elastic_transport
# and opensearch-py log every request at INFO and every failed attempt at WARNING
# (opensearch-py also every 404 and 409, which this project expects as answers), with
# the exception; during an outage that was ~30 lines a second per process. Our own
# code logs each failure once, with its reason (``Throttled``), so theirs are noise
# below ERROR.
LIBRARY_LEVELS = ["elastic_transport=ERROR", "elasticsearch=WARN", "opensearch=ERROR",
                  "opensearchpy=ERROR", "kombu=WARN", "amqp=WARN", "websockets=WARN",
                  "stevedore=WARN"]


def short(value: object, limit: int = MAX_TEXT) -> str:
    """``str(value)`` on one line, cut to ``limit`` characters."""
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        text = f"<unprintable {type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def cap_lines(text: str, limit: int = MAX_LINE, lines: int = MAX_LINES) -> str:
    """``text`` with each line cut to ``limit`` characters and at most ``lines``
    lines (the last kept line says how many were left out)."""
    parts = text.split("\n")
    if len(parts) > lines:
        left = len(parts) - lines + 1
        parts = parts[:lines - 1] + [f"... ({left} more lines)"]
    return "\n".join(p if len(p) <= limit else p[:limit - 3] + "..." for p in parts)


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
    ``limit`` characters (each line, and ``MAX_LINES`` lines), and its traceback is
    cut to ``TRACEBACK_FRAMES`` frames and kept only the first time its (logger,
    exception type) is seen in ``interval`` s.
    """

    def __init__(self, interval: float = 300.0, limit: int = MAX_LINE):
        super().__init__()
        # Room on the line for the formatter's prefix and the exception's
        # description (``LineCap`` cuts whatever still exceeds ``limit``).
        self.limit = max(100, limit - PREFIX_ROOM)
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
        else:
            capped = cap_lines(text, self.limit)
            if capped == text:
                return True
            text = capped
        record.msg, record.args = text, ()
        return True


class LineCap(logging.Formatter):
    """A handler's formatter, whose every written line (the formatter's prefix
    included) is cut to ``limit`` characters: the documented bound holds whatever
    a record or a formatter's context adds."""

    def __init__(self, inner: logging.Formatter | None, limit: int = MAX_LINE):
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        return cap_lines(self.inner.format(record), self.limit, lines=10 * MAX_LINES)


def install_hygiene(logger: logging.Logger | None = None,
                    interval: float = 300.0, limit: int = MAX_LINE) -> LibraryHygiene:
    """Put one ``LibraryHygiene`` on every handler of ``logger`` (the root), and
    cap every line those handlers write at ``limit`` characters (``LineCap``)."""
    hygiene = LibraryHygiene(interval, limit)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(hygiene)
        if not isinstance(handler.formatter, LineCap):
            handler.setFormatter(LineCap(handler.formatter, limit))
    return hygiene
