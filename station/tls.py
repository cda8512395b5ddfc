"""The station's HTTPS certificate, issued by the dock's own CA (dock/pki.py).

Browsers on the unit's network trust the station once the dock's CA certificate is
installed as a trust anchor (``<dock>/ca/ca.crt``). The certificate names ``localhost``,
``127.0.0.1``, the machine's host name and every name given; it is issued again when one
is missing or it is within 30 days of expiry.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from cryptography import x509

from dock import pki
from dock.enrollment import dock_ca

TLS_DIR = "station-tls"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def server_certificate(dock_dir: Path, names: tuple[str, ...] = ()) -> pki.CertFiles:
    wanted = ["localhost", socket.gethostname(), "127.0.0.1",
              *[n for n in names if n not in ("0.0.0.0", "::", "")]]
    hosts = list(dict.fromkeys(n for n in wanted if not _is_ip(n)))
    ips = list(dict.fromkeys(n for n in wanted if _is_ip(n)))
    folder = Path(dock_dir) / TLS_DIR
    cert = pki.CertFiles(folder / "station.crt", folder / "station.key")
    if cert.cert.exists() and cert.key.exists():
        current = x509.load_pem_x509_certificate(cert.cert.read_bytes())
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {*san.get_values_for_type(x509.DNSName),
                *(str(i) for i in san.get_values_for_type(x509.IPAddress))}
        fresh = current.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=30)
        if fresh and set(hosts) | set(ips) <= have:
            return cert
    return pki.issue_server(dock_ca(dock_dir), folder, hostnames=hosts, ips=ips, name="station")
