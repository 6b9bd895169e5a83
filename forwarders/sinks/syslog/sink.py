"""The ``syslog`` sink: each change as an RFC 5424 message to a remote syslog server
(rsyslog, syslog-ng, logstash, papertrail...) over UDP, TCP or TLS.

Options (an ini section, or a subscription's settings):

* ``url`` (required): ``syslog+tls://host[:6514]``, ``syslog+tcp://host[:514]`` or
  ``syslog+udp://host[:514]``;
* ``facility`` (``local0``), ``hostname`` (this host's name), ``app_name``
  (``searchlight-forward``), ``sd_id`` (``change@32473``): see ``message``;
* TLS (RFC 5425): ``ca_file`` (default: the system's CAs), ``cert_file`` and
  ``key_file`` (a client certificate, for servers that ask for one),
  ``server_name`` (the name the certificate must carry; default the URL's host);
* ``timeout`` (seconds to connect and send, default 5), ``max_udp_size`` (octets of
  one datagram, default 2048: RFC 5426's size every receiver must take);
* ``allowed_networks``: where a tenant's destination may resolve although private;
  with ``check_destination = true`` (subscriptions), every connection goes only to
  checked addresses (the webhook's SSRF guard).

Classification: a refused or broken connection, a timeout, a TLS handshake that
fails (the server does not speak TLS there, or its certificate is not trusted) is
``SinkUnavailable`` with a message that says what to check, and the pipeline's
failure policy decides what follows; a message too big for one UDP datagram is
``SinkRejected`` (a dead letter with the reason).

Like the webhook sink, it remembers the newest version sent per resource
(``base.Sent``): a version is not sent twice in one consumer's run, nor one older
than a version sent (the change log can hold one version twice: a redelivered
notification, such as Glance's ``image.activate`` right after ``image.upload`` with
the same ``updated_at``, rewrites the user copy). ``deliver`` returns how many it
did not send; a replay (a new run) sends everything again.

TCP and TLS have no acknowledgements: a change written into a connection the server
drops at that moment can be lost (RFC 6587's known limit; RELP would close it). The
sink checks the connection before every batch, so a server that went away is
noticed before anything is written to it.
"""
from __future__ import annotations

import select
import socket
import ssl
from typing import Sequence

from forwarders.options import Float, Integer
from forwarders.sinks import destinations
from forwarders.sinks.base import (Rejection, Sent, Sink, SinkConfigError,
                                   SinkRejected, SinkUnavailable)
from forwarders.sinks.syslog.message import (FACILITIES, SD_ID, format_message,
                                             octet_counted)
from forwarders.sinks.syslog.url import parse_url
from searchlight_forward.model.envelope import Envelope

class SyslogSink(Sink):
    default_policy = "hold"

    def __init__(self, name, options, context):
        super().__init__(name, options, context)
        o = self.options
        self.url = o.text("url", required=True)
        try:
            self.transport, self.host, self.port = parse_url(self.url)
        except ValueError as exc:
            raise SinkConfigError("url", str(exc)) from None
        facility = o.text("facility", "local0").strip().lower()
        if facility not in FACILITIES:
            raise SinkConfigError("facility", f"one of {', '.join(FACILITIES)}")
        self.facility = FACILITIES[facility]
        self.hostname = o.text("hostname", socket.gethostname())
        self.app_name = o.text("app_name", "searchlight-forward")
        self.sd_id = o.text("sd_id", SD_ID)
        if not self.sd_id or any(c in self.sd_id for c in ' ="]') or "@" not in self.sd_id:
            raise SinkConfigError("sd_id", "name@<enterprise number>, no spaces, = \" or ]")
        self.timeout = o.typed("timeout", Float(min=0.1, max=120), 5.0)
        self.max_udp = o.typed("max_udp_size", Integer(min=480, max=65000), 2048)
        self.check = o.text("check_destination", "false").strip().lower() == "true"
        try:
            self.allowed = destinations.networks(o.listing("allowed_networks", []) or [])
        except ValueError as exc:
            raise SinkConfigError("allowed_networks", str(exc)) from None
        self.tls = self._tls_context(o) if self.transport == "tls" else None
        self.server_name = o.text("server_name", self.host)
        self.call_timeout = 2 * self.timeout + 1.0       # connect (with TLS), then send
        self._sock: socket.socket | None = None
        self._sent = Sent()

    @staticmethod
    def _tls_context(o) -> ssl.SSLContext:
        ca_file = o.text("ca_file", "") or None
        cert_file, key_file = o.text("cert_file", "") or None, o.text("key_file", "") or None
        if bool(cert_file) != bool(key_file):
            raise SinkConfigError("cert_file", "give cert_file and key_file together")
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            option = "cert_file" if cert_file and "cafile" not in str(exc) else "ca_file"
            raise SinkConfigError(option, f"cannot load it: {exc}") from None
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    # -- the connection --------------------------------------------------------------

    def _addresses(self) -> list[str]:
        if self.check:
            return destinations.resolve(self.host, self.port, self.allowed)
        return [self.host]

    def _connect(self) -> socket.socket:
        where = f"{self.host}:{self.port}"
        try:
            addresses = self._addresses()
        except destinations.DestinationRefused as exc:
            raise SinkUnavailable(f"syslog destination {where} refused: {exc}") from None
        last: Exception | None = None
        for address in addresses:
            try:
                if self.transport == "udp":
                    family = socket.AF_INET6 if ":" in address else socket.AF_INET
                    sock = socket.socket(family, socket.SOCK_DGRAM)
                    sock.settimeout(self.timeout)
                    sock.connect((address, self.port))
                    return sock
                sock = socket.create_connection((address, self.port), self.timeout)
                if self.tls is None:
                    return sock
                try:
                    return self.tls.wrap_socket(sock, server_hostname=self.server_name)
                except (ssl.SSLError, OSError) as exc:
                    sock.close()
                    raise SinkUnavailable(
                        f"TLS handshake with syslog server {where} failed ({exc}): check "
                        "that it speaks TLS on this port and that ca_file trusts its "
                        "certificate (and that it accepts this client's, if it asks)"
                    ) from None
            except SinkUnavailable:
                raise
            except OSError as exc:
                last = exc
        raise SinkUnavailable(f"cannot connect to syslog server {where} "
                              f"({self.transport}): {last}")

    def _alive(self) -> bool:
        """Is the open stream connection still usable (no EOF, no error waiting)?"""
        sock = self._sock
        if sock is None or self.transport == "udp":
            return sock is not None
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return True
            if isinstance(sock, ssl.SSLSocket) and sock.pending():
                return True
            return sock.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def _drop(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    # -- delivery ----------------------------------------------------------------------

    def message(self, envelope: Envelope, text: str | None = None) -> bytes:
        return format_message(envelope, self.facility, self.hostname, self.app_name,
                              self.sd_id, text=text)

    def send_message(self, data: bytes) -> None:
        """One message on the connection (framed for TCP and TLS)."""
        if not self._alive():
            self._drop()
            self._sock = self._connect()
        if self.transport == "udp":
            self._sock.send(data)
        else:
            self._sock.sendall(octet_counted(data))

    def deliver(self, envelopes: Sequence[Envelope]) -> int:
        rejected: list[Rejection] = []
        memory = self._sent.for_caller()        # the calling consumer's run
        not_sent = 0
        for i, envelope in enumerate(envelopes):
            if not memory.wanted(envelope):
                not_sent += 1
                continue
            data = self.message(envelope)
            if self.transport == "udp" and len(data) > self.max_udp:
                rejected.append(Rejection(i, envelope, f"{len(data)} octets: more than "
                                          f"max_udp_size ({self.max_udp}); use TCP or TLS"))
                continue
            try:
                self.send_message(data)
            except SinkUnavailable as exc:
                raise SinkUnavailable(str(exc), delivered=i) from None
            except OSError as exc:
                self._drop()
                raise SinkUnavailable(f"syslog server {self.host}:{self.port} "
                                      f"({self.transport}): {exc}", delivered=i) from None
            memory.record(envelope)
        if rejected:
            raise SinkRejected(rejected, delivered=len(envelopes))
        return not_sent

    def close(self) -> None:
        self._drop()
