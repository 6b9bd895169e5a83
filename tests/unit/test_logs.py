"""Log hygiene: a line per failure, tracebacks rate-limited, nothing payload-sized."""
import logging

import io

from searchlight_forward.logs import (LIBRARY_LEVELS, Throttled, brief_traceback, cap_lines,
                                      install_hygiene, short)


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


def oslo_handler(stream):
    """A handler formatted as oslo.log formats a command's log lines."""
    from oslo_config import cfg
    from oslo_log import formatters, log as oslo_log
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    conf([], project="searchlight-forward")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters.ContextFormatter(project="searchlight-forward",
                                                     config=conf))
    return handler


def test_no_written_line_is_longer_than_2000_characters_prefix_included():
    # elasticsearch's SerializationError quotes the whole document it could not
    # encode; the record passes the message cap, the formatter adds its prefix.
    stream = io.StringIO()
    root = logging.getLogger("hygiene-cap")
    root.handlers = [oslo_handler(stream)]
    root.propagate = False
    install_hygiene(root, interval=3600)
    document = "{" + ", ".join(f"'field_{i}': 'value {i}'" for i in range(300)) + "}"
    assert len(document) > 4_000
    library = root.getChild("elasticsearch")
    library.warning("Unable to serialize to JSON: %s (type: dict)", document)
    try:
        raise ValueError(f"Unable to serialize to JSON: {document}")
    except ValueError:
        library.exception("bulk failed for %s", document)
        library.exception("bulk failed for %s", document)     # no traceback now
    lines = stream.getvalue().splitlines()
    assert lines and max(len(line) for line in lines) <= 2000
    assert sum("Unable to serialize" in line for line in lines) == 4


def test_a_record_of_many_lines_keeps_forty():
    stream = io.StringIO()
    root = logging.getLogger("hygiene-lines")
    root.handlers = [logging.StreamHandler(stream)]
    root.propagate = False
    install_hygiene(root, interval=3600)
    root.getChild("lib").warning("%s", "\n".join(f"line {i}" for i in range(1000)))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 40
    assert lines[0] == "line 0" and lines[-1] == "... (961 more lines)"


def test_cap_lines_cuts_a_long_line_to_exactly_the_cap():
    assert cap_lines("x" * 2001) == "x" * 1997 + "..."
    assert cap_lines("x" * 2000) == "x" * 2000
    assert cap_lines("a\nb\nc", lines=2) == "a\n... (2 more lines)"


def test_client_libraries_log_only_errors():
    # What setup() gives oslo.log's default_log_levels: the search clients'
    # per-request INFO and per-attempt WARNING lines are not written.
    levels = dict(item.split("=") for item in LIBRARY_LEVELS)
    assert levels["elastic_transport"] == "ERROR"
    assert levels["opensearch"] == "ERROR"
    from searchlight_forward.commands import common
    assert set(LIBRARY_LEVELS) <= set(common.QUIET)
