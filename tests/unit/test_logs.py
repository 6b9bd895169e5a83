"""Log hygiene: a line per failure, tracebacks rate-limited, nothing payload-sized."""
import logging

import io

from searchlight_forward.logs import Throttled, brief_traceback, install_hygiene, short


def deep(n):
    return deep(n - 1) if n else 1 / 0


def test_short_is_one_line_and_bounded():
    assert short("a\nb   c") == "a b c"
    assert len(short("x" * 100_000)) <= 303


def test_traceback_once_per_kind_per_interval(caplog):
    log = Throttled(logging.getLogger("t"), interval=3600)
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(50):
            try:
                deep(900)
            except ZeroDivisionError as exc:
                log.failure("work", exc, "retrying")
    assert len(caplog.records) == 50
    with_tb = [r for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(with_tb) == 1
    # a thousand-frame recursion logs a few frames, not all of them
    assert with_tb[0].getMessage().count("\n") < 40
    assert all(len(r.getMessage()) < 10_000 for r in caplog.records)


def test_brief_traceback_keeps_the_last_frames():
    try:
        deep(100)
    except ZeroDivisionError as exc:
        text = brief_traceback(exc, frames=3)
    assert "ZeroDivisionError" in text and text.count('File "') == 3


def test_a_library_logging_a_deep_traceback_per_message_writes_a_few_lines():
    # oslo.messaging's "Failed to process message ... skipping it" logs the whole
    # exception (and the payload in its message) for each undecodable message.
    stream = io.StringIO()
    root = logging.getLogger("hygiene-root")
    root.handlers = [logging.StreamHandler(stream)]
    root.propagate = False
    install_hygiene(root, interval=3600)
    library = root.getChild("oslo.messaging")
    for i in range(200):
        try:
            deep(900)
        except ZeroDivisionError:
            library.exception("Failed to process message %s ... skipping it.", "p" * 50_000)
    out = stream.getvalue()
    assert out.count("Traceback") == 1 and out.count("ZeroDivisionError") == 200
    assert len(out.splitlines()) < 200 + 40
    assert len(out) < 200 * 2_200 + 10_000     # each line cut near 2,000 characters
