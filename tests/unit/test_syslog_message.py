"""RFC 5424 messages of changes, read back by an independent parser
(syslog-rfc5424-parser), and RFC 6587 octet counting."""
import datetime
import re

import pytest
from syslog_rfc5424_parser import SyslogMessage

from forwarders.sinks.syslog.message import FACILITIES, format_message, octet_counted, sd_escape
from forwarders.sinks.syslog.url import parse_url
from searchlight_forward.model.envelope import Envelope, control, summary

NOW = datetime.datetime(2026, 3, 2, 12, 0, 7, 270156, tzinfo=datetime.timezone.utc)


def envelope(**kw):
    fields = dict(resource_type="OS::Nova::Server", id="3f2a", project_id="p1",
                  version=1772452807000000270, operation="index",
                  event_type="compute.instance.update", timestamp="",
                  document={"name": 'web "1"]\\', "status": "ACTIVE"}, priority="info")
    fields.update(kw)
    return Envelope(**fields)


def parse(data: bytes) -> dict:
    return SyslogMessage.parse(data.decode()).as_dict()


def unescape(value: str) -> str:            # RFC 5424 6.3.3, the reader's side
    return re.sub(r'\\(["\\\]])', r"\1", value)


def test_a_change_reads_back_with_every_field():
    data = format_message(envelope(), FACILITIES["local0"], "fwd-1", "searchlight-forward",
                          now=NOW)
    m = parse(data)
    assert (m["facility"], m["severity"]) == ("local0", "info")
    assert (m["hostname"], m["appname"], m["msgid"]) == ("fwd-1", "searchlight-forward",
                                                         "index")
    assert m["timestamp"] == "2026-03-02T12:00:07.270156Z"
    sd = {k: unescape(v) for k, v in m["sd"]["change@32473"].items()}
    assert sd == {"id": "3f2a", "type": "OS::Nova::Server", "project": "p1",
                  "version": "1772452807000000270", "operation": "index",
                  "event_type": "compute.instance.update", "priority": "info"}
    assert m["msg"] == '\ufeffOS::Nova::Server 3f2a (web "1"]\\) updated: ACTIVE ' \
                       '(compute.instance.update)'


@pytest.mark.parametrize("kw, severity", [
    ({"priority": "error"}, "err"), ({"priority": "critical"}, "crit"),
    ({"priority": "warn"}, "warning"), ({"priority": "debug"}, "debug"),
    ({"alert": {"priority": "error", "event_type": "compute.instance.create.error",
                "version": 1}}, "err"),
])
def test_severity_follows_the_priority_or_the_alert(kw, severity):
    m = parse(format_message(envelope(**kw), FACILITIES["user"], "h", "a", now=NOW))
    assert m["severity"] == severity and m["facility"] == "user"


def test_deletes_controls_and_hostile_header_values():
    gone = envelope(operation="delete", document=None, event_type="instance.delete.end")
    assert summary(gone) == "OS::Nova::Server 3f2a deleted (instance.delete.end)"
    m = parse(format_message(control("resync_begin", "rebuilt"), 16, "h o s t\n", "",
                             now=NOW))
    assert m["hostname"] == "host" and m["appname"] in (None, "-")
    assert m["msgid"] == "resync_begin"
    assert sd_escape('a"b\\c]') == 'a\\"b\\\\c\\]'


def test_octet_counting_counts_octets_not_characters():
    data = format_message(envelope(document={"name": "vm-é"}), 16, "h", "a", now=NOW)
    framed = octet_counted(data)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(data) and rest == data


@pytest.mark.parametrize("url, expected", [
    ("syslog+tls://logs.example.com", ("tls", "logs.example.com", 6514)),
    ("syslog+tcp://127.0.0.1:1514", ("tcp", "127.0.0.1", 1514)),
    ("syslog+udp://[::1]:514", ("udp", "::1", 514)),
])
def test_urls(url, expected):
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://x", "syslog+tls://", "syslog+tcp://h:99999",
                                 "syslog+tcp://u@h", "syslog+udp://h/path"])
def test_bad_urls(url):
    with pytest.raises(ValueError):
        parse_url(url)
