"""The destination guard (pure part): which addresses a tenant's endpoint may use."""
import ipaddress
import socket

import pytest

from forwarders.sinks import destinations

ip = ipaddress.ip_address


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1",
                                     "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
                                     "fe80::1", "fd00::1", "::ffff:10.0.0.1", "224.0.0.1",
                                     "255.255.255.255", "192.0.2.1"])
def test_inside_addresses_are_refused_and_the_message_names_the_option(address):
    why = destinations.refusal(ip(address), ())
    assert why and "allowed_networks" in why


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
                                     "8.8.8.8"])
def test_global_addresses_are_allowed(address):
    assert destinations.refusal(ip(address), ()) is None


def test_the_allow_list_admits_exactly_its_networks():
    allowed = destinations.networks(["127.0.0.1/32", " 10.20.0.0/16 ", ""])
    assert destinations.refusal(ip("127.0.0.1"), allowed) is None
    assert destinations.refusal(ip("10.20.3.4"), allowed) is None
    assert destinations.refusal(ip("::ffff:127.0.0.1"), allowed) is None
    assert destinations.refusal(ip("127.0.0.2"), allowed)
    assert destinations.refusal(ip("10.21.0.1"), allowed)
    with pytest.raises(ValueError):
        destinations.networks(["10.0.0.300/8"])


def test_a_name_with_any_inside_address_is_refused_whole():
    with pytest.raises(destinations.DestinationRefused, match="localhost"):
        destinations.resolve("localhost", 80, ())
    assert destinations.resolve("127.0.0.1", 80, destinations.networks(["127.0.0.0/8"])) \
        == ["127.0.0.1"]


@pytest.mark.parametrize("host, message", [
    ("127.0.0.1", "127.0.0.1 is a loopback address; an operator may allow it in "
                  "[subscriptions] allowed_networks"),
    ("::1", "::1 is a loopback address; an operator may allow it in "
            "[subscriptions] allowed_networks"),
    ("10.1.2.3", "10.1.2.3 is a private address; an operator may allow it in "
                 "[subscriptions] allowed_networks"),
])
def test_a_refused_address_is_named_once(host, message):
    with pytest.raises(destinations.DestinationRefused) as refused:
        destinations.resolve(host, 80, ())
    assert str(refused.value) == message


def test_a_refused_name_says_where_it_points():
    first = socket.getaddrinfo("localhost", 80, proto=socket.IPPROTO_TCP)[0][4][0]
    with pytest.raises(destinations.DestinationRefused) as refused:
        destinations.resolve("localhost", 80, ())
    assert str(refused.value) == (
        f"localhost resolves to {first}, which is a loopback address; an operator "
        "may allow it in [subscriptions] allowed_networks")
