import pytest

from searchlight_forward.listener.messages import UnreadableMessage, to_notification


def test_reads_an_oslo_messaging_message():
    n = to_notification("info", {"event_type": "port.create.end", "publisher_id": "network.h1",
                                 "payload": {"port": {"id": "x"}}, "ctxt": {"request_id": "r"},
                                 "metadata": {"message_id": "m1",
                                              "timestamp": "2026-11-21 10:00:00.123456"}})
    assert n.event_type == "port.create.end" and n.message_id == "m1"
    assert n.timestamp == "2026-11-21 10:00:00.123456" and n.payload == {"port": {"id": "x"}}


def test_a_json_encoded_payload_is_decoded():
    n = to_notification("info", {"event_type": "e", "payload": '{"a": 1}'})
    assert n.payload == {"a": 1}


@pytest.mark.parametrize("message, reason", [
    ({"payload": {}}, "no event_type"),
    ({"event_type": "e", "payload": "not json {"}, "not JSON"),
    ({"event_type": "e"}, "no payload"),
])
def test_unreadable_messages_say_why(message, reason):
    with pytest.raises(UnreadableMessage, match=reason):
        to_notification("info", message)
