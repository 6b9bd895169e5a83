"""A real rsyslog for the tests: Debian's rsyslogd with a configuration of the test's
own, all state in the test's directory, listening on 127.0.0.1 only: plain TCP, TLS
(gtls, RFC 5425: one port where clients must show a certificate of the test's CA,
one open to any client) and UDP, each
message written as it arrived (the raw RFC 5424 text) to a file the test reads."""
from __future__ import annotations

import datetime
import ipaddress
import pathlib
import shutil
import socket
import subprocess
import time

from syslog_rfc5424_parser import SyslogMessage

from devtools.net import free_port

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"

CONF = """
global(workDirectory="{dir}/work"
       defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{server_cert}"
       defaultNetstreamDriverKeyFile="{server_key}")
module(load="imtcp" maxSessions="100")
module(load="imudp")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="out") {{
  action(type="omfile" file="{dir}/messages.log" template="raw" flushOnTXEnd="on"
         asyncWriting="off")
}}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="out")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="out"
      streamDriver.name="gtls" streamDriver.mode="1"
      streamDriver.authMode="x509/certvalid")
input(type="imtcp" address="127.0.0.1" port="{tls_open}" ruleset="out"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" address="127.0.0.1" port="{udp}" ruleset="out")
"""


class Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as files."""

    def __init__(self, directory: pathlib.Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def name(cn):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write(stem, cert, key):
            cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
            cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
            return str(cert_path), str(key_path)

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(
            name("test CA")).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True,
                                         False, False), critical=True)
            .sign(ca_key, hashes.SHA256()))
        self.ca, _ = write("ca", ca, ca_key)

        def leaf(cn, usage, san):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (x509.CertificateBuilder().subject_name(name(cn))
                       .issuer_name(ca.subject).public_key(key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(hours=2))
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
            if san:
                builder = builder.add_extension(x509.SubjectAlternativeName(san),
                                                critical=False)
            return builder.sign(ca_key, hashes.SHA256()), key

        cert, key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH,
                         [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                          x509.DNSName("localhost")])
        self.server_cert, self.server_key = write("server", cert, key)
        cert, key = leaf("searchlight-forward", ExtendedKeyUsageOID.CLIENT_AUTH, None)
        self.client_cert, self.client_key = write("client", cert, key)


class Rsyslog:
    def __init__(self, directory: pathlib.Path):
        if not pathlib.Path(RSYSLOGD).exists():
            raise RuntimeError("rsyslogd is not installed: make test-servers (Debian's rsyslog and "
                        "rsyslog-gnutls)")
        self.dir = directory
        (directory / "work").mkdir(parents=True, exist_ok=True)
        self.certs = Certificates(directory)
        # tls: clients must show a certificate of the CA; tls_open: any client
        self.tcp, self.tls, self.tls_open, self.udp = (free_port() for _ in range(4))
        self.log = directory / "messages.log"
        conf = directory / "rsyslog.conf"
        conf.write_text(CONF.format(dir=directory, ca=self.certs.ca,
                                    server_cert=self.certs.server_cert,
                                    server_key=self.certs.server_key,
                                    tcp=self.tcp, tls=self.tls, tls_open=self.tls_open,
                                    udp=self.udp))
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(directory / "rsyslogd.pid")],
            stdout=open(directory / "rsyslogd.out", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not all(self._listening(p) for p in (self.tcp, self.tls, self.tls_open)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("rsyslogd did not start: "
                            + (directory / "rsyslogd.out").read_text()[-2000:])
            time.sleep(0.1)

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def url(self, listener: str) -> str:
        """``syslog+<transport>://`` of a listener: tcp, tls, tls_open or udp."""
        transport = listener.split("_")[0]
        return f"syslog+{transport}://127.0.0.1:{getattr(self, listener)}"

    def messages(self) -> list[dict]:
        """Every message written so far, parsed (the structured data unescaped)."""
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_bytes().decode("utf-8", "replace").splitlines():
            if not line.startswith("<"):
                continue          # not syslog (a TLS hello sent to the plain port)
            try:
                message = SyslogMessage.parse(line).as_dict()
            except Exception:  # noqa: BLE001 - the same: not ours to read
                continue
            for sd in message["sd"].values():
                for k, v in sd.items():
                    sd[k] = v.replace('\\"', '"').replace("\\]", "]").replace(
                        "\\\\", "\\")
            out.append(message)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
