"""etc/forwarders.ini parsing: conventions and the errors operators get."""
import pytest

from searchlight_forward.model.envelope import Envelope
from forwarders.filters.base import FilterContext
from forwarders.pipeline.loader import ForwardingConfigError, load
from forwarders.sinks.base import SinkContext

CONTEXT = FilterContext(admin_only={"OS::Nova::Server": ("OS-EXT-SRV-ATTR:*",)},
                        resource_types=("OS::Nova::Server", "OS::Glance::Image"))
GOOD = """
[DEFAULT]
attempts = 7

[forwarding]
pipelines = audit ops

[pipeline:audit]
pipeline = logger

[pipeline:ops]
pipeline = admin_only secrets ops_log
resource_types = OS::Nova::Server
event_types = instance.*

[filter:admin_only]
use = egg:searchlight-forward#admin_only_fields

[filter:secrets]
use = regex_fields
patterns = (?i)password

[sink:logger]
use = egg:searchlight-forward#logger

[sink:ops_log]
use = egg:searchlight-forward#logger
level = %(level)s
level = WARNING
fields = id, document.name, here_is=%(here)s
"""


# An old-form pipeline ending in the websocket "sink", with an option of the server.
WS_PIPELINE = """
[pipeline:ws]
pipeline = ws

[sink:ws]
use = egg:searchlight-forward#websocket
port = 9000
"""


def write(tmp_path, text):
    path = tmp_path / "forwarders.ini"
    path.write_text(text)
    return str(path)


def load_text(tmp_path, text):
    return load(write(tmp_path, text), CONTEXT, SinkContext())


def test_a_good_file_builds_pipelines_with_defaults_inherited(tmp_path):
    text = GOOD.replace("level = %(level)s\n", "")
    audit, ops = load_text(tmp_path, text).pipelines
    assert audit.name == "audit" and audit.filters == [] and audit.failure.on_failure == "drop"
    assert audit.failure.retry.attempts == 7              # from [DEFAULT]
    assert audit.failure.attempts == 1                    # drop: one attempt
    assert [f.name for f in ops.filters] == ["admin_only", "secrets"]
    assert str(tmp_path) in ops.sink.fields[-1]           # %(here)s
    server = Envelope("OS::Nova::Server", "s1", "p1", 5, "index", "instance.update", "",
                      {"name": "vm", "adminPassword": "x", "OS-EXT-SRV-ATTR:host": "h"})
    assert ops.wants(server)
    assert not ops.wants(Envelope("OS::Glance::Image", "i", "p", 1, "index",
                                  "image.update", "", {}))
    assert not ops.wants(Envelope("OS::Nova::Server", "s1", "p1", 5, "index",
                                  "compute.instance.update", "", {}))
    assert ops.transform(server).document == {"name": "vm"}


@pytest.mark.parametrize("edit, section, option, message", [
    (lambda t: t.replace("pipeline = logger", "pipeline = nosuch"),
     "pipeline:audit", "pipeline", "'nosuch' has no [filter:nosuch] or [sink:nosuch]"),
    (lambda t: t.replace("pipeline = admin_only secrets ops_log", "pipeline = admin_only ops_log secrets"),
     "pipeline:ops", "pipeline", "sink 'ops_log' must be last"),
    (lambda t: t.replace("pipeline = admin_only secrets ops_log", "pipeline = admin_only secrets"),
     "pipeline:ops", "pipeline", "must be a sink"),
    (lambda t: t.replace("patterns = (?i)password", "patterns = (?i)pass(word"),
     "filter:secrets", "patterns", "not a valid regular expression"),
    (lambda t: t.replace("patterns = (?i)password", ""),
     "filter:secrets", "patterns", "at least one regular expression"),
    (lambda t: t.replace("use = regex_fields", "use = egg:searchlight-forward#regexp"),
     "filter:secrets", "use", "no searchlight_forward.filters entry point"),
    # egg:<dist>#: the entry point must come from that distribution
    (lambda t: t.replace("use = regex_fields", "use = egg:someone-else#regex_fields"),
     "filter:secrets", "use", "no searchlight_forward.filters entry point "
     "'egg:someone-else#regex_fields'; installed: admin_only_fields, regex_fields"),
    (lambda t: t.replace("use = regex_fields", "use = call:forwarders.filters.nosuch:X"),
     "filter:secrets", "use", "cannot load 'call:forwarders.filters.nosuch:X'"),
    (lambda t: t.replace("resource_types = OS::Nova::Server", "resource_types = OS::Nova::Sever"),
     "pipeline:ops", "resource_types", "unknown resource type(s) OS::Nova::Sever"),
    (lambda t: t.replace("pipelines = audit ops", "pipelines = audit opps"),
     "forwarding", "pipelines", "pipeline 'opps' has no [pipeline:opps] section"),
    (lambda t: t.replace("[pipeline:audit]\npipeline = logger", "[pipeline:audit]\n"),
     "pipeline:audit", "pipeline", "missing or empty"),
    (lambda t: t.replace("level = WARNING", "level = LOUD"),
     "sink:ops_log", "level", "'LOUD' is not a log level"),
    (lambda t: t.replace("[sink:logger]\n", "[sink:logger]\non_failure = sometimes\n"),
     "sink:logger", "on_failure", "not one of drop, retry, hold"),
    (lambda t: t.replace("[pipeline:audit]\n", "[pipeline:audit]\nmust_deliver = true\n"),
     "pipeline:audit", "must_deliver", "no longer exists"),
    (lambda t: t.replace("[pipeline:audit]\n", "[pipeline:audit]\nmust_delivre = true\n"),
     "pipeline:audit", "must_delivre", "unknown option"),
    (lambda t: t.replace("attempts = 7", "attempts = many"),
     "sink:logger", "attempts", "'many' is not valid"),
    (lambda t: t.replace("attempts = 7", "attempts = 0"),
     "sink:logger", "attempts", "'0' is not valid"),
    (lambda t: t.replace("[pipeline:audit]\n", "[pipeline:audit]\npriorities = info, loud\n"),
     "pipeline:audit", "priorities", "unknown priority 'loud'"),
    (lambda t: t.replace("[pipeline:audit]\n", "[pipeline:audit]\nstart_from = yesterday\n"),
     "pipeline:audit", "start_from", "not one of beginning, now"),
    (lambda t: t.replace("pipelines = audit ops", "pipelines = audit ops ws") + WS_PIPELINE,
     "sink:ws", "port", "options of [websocket] in the main configuration"),
])
def test_mistakes_name_the_file_section_and_option(tmp_path, edit, section, option, message):
    text = edit(GOOD.replace("level = %(level)s\n", ""))
    with pytest.raises(ForwardingConfigError) as info:
        load_text(tmp_path, text)
    error = str(info.value)
    assert error.startswith(f"{tmp_path / 'forwarders.ini'} [{section}] {option}: "), error
    assert message in error, error


def test_not_an_ini_file_and_bad_interpolation_are_explained(tmp_path):
    with pytest.raises(ForwardingConfigError, match="not a valid ini file"):
        load_text(tmp_path, "pipelines = a\n[forwarding")
    with pytest.raises(ForwardingConfigError, match=r"\[sink:ops_log\] level: bad %\(...\)s"):
        load_text(tmp_path, GOOD.replace("level = WARNING\n", ""))
    with pytest.raises(ForwardingConfigError, match=r"\[sink:ops_log\] level: given twice"):
        load_text(tmp_path, GOOD)
    with pytest.raises(ForwardingConfigError, match="missing section"):
        load_text(tmp_path, "[pipeline:a]\npipeline = x\n")


def test_priorities_select_envelopes(tmp_path):
    text = GOOD.replace("level = %(level)s\n", "").replace(
        "[pipeline:audit]\n", "[pipeline:audit]\npriorities = error, CRITICAL\n")
    audit, _ = load_text(tmp_path, text).pipelines
    error = Envelope("OS::Nova::Server", "s1", "p1", 5, "index", "compute.instance.create.error",
                     "", {}, priority="error")
    assert audit.wants(error)
    assert not audit.wants(Envelope("OS::Nova::Server", "s1", "p1", 5, "index",
                                    "instance.update", "", {}, priority="info"))
