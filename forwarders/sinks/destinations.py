"""Where a sink may connect: the guard against server-side request forgery (pure,
with the name lookup at its edge).

A tenant chooses a webhook's URL; without a guard, the delivery service would
POST wherever that name points: to the metadata service (169.254.169.254), a
database on the management network, localhost. So every address a destination
resolves to must be globally routable, unless the operator's allow-list
(``[subscriptions] allowed_networks``) contains it. The check runs when a
subscription is created or changed (a clear 400) and again before every
connection, on the very addresses the connection then uses (a name that resolves
elsewhere later, DNS rebinding, gains nothing).
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(ValueError):
    """The destination is not allowed (or does not resolve); the message says why."""


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``allowed_networks`` values (CIDRs or addresses) -> networks; ValueError on
    a malformed one."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _kind(address: Address, allowed: Sequence[Network]) -> str | None:
    """What kind of refused address ``address`` is, or None if it may be used."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed):
        return None
    if address.is_global and not address.is_multicast:
        return None
    return ("loopback" if address.is_loopback else "link-local" if address.is_link_local
            else "private" if address.is_private else "multicast" if address.is_multicast
            else "reserved or not globally routable")


_ALLOW = "an operator may allow it in [subscriptions] allowed_networks"


def refusal(address: Address, allowed: Sequence[Network]) -> str | None:
    """Why ``address`` may not be connected to, or None if it may."""
    kind = _kind(address, allowed)
    return None if kind is None else f"{address} is a {kind} address; {_ALLOW}"


def resolve(host: str, port: int, allowed: Sequence[Network]) -> list[str]:
    """The addresses of ``host`` to connect to, all checked; ``DestinationRefused``
    if it does not resolve or any address is refused (a name that also points
    inside is refused whole)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"{host} does not resolve: {exc}") from None
    found: list[str] = []
    for info in infos:
        text = info[4][0]
        address = ipaddress.ip_address(text.split("%")[0])
        kind = _kind(address, allowed)
        if kind is not None:      # an address is named once; a name says where it points
            said = (f"{host} is" if _is_literal(host, address)
                    else f"{host} resolves to {address}, which is")
            raise DestinationRefused(f"{said} a {kind} address; {_ALLOW}")
        if text not in found:
            found.append(text)
    if not found:
        raise DestinationRefused(f"{host} has no address")
    return found


def _is_literal(host: str, address: Address) -> bool:
    """Is ``host`` the address itself (``127.0.0.1``, ``::1``, ``[::1]``)?"""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]) == address
    except ValueError:
        return False
