"""The tablet's side of TLS to the lab server: a pinned lab CA, and no plain HTTP off loopback.

The enrollment code the lab prints carries a fingerprint of the lab's CA certificate
(`CODE#PIN`). Enrolling fetches the CA certificate once over an unverified connection, keeps
it only when its fingerprint matches the pin, and from then on every connection verifies
the server's certificate (and host name) against that CA alone. A man in the middle can
neither pass a CA of its own (wrong fingerprint) nor relay the lab's (it has no certificate
the CA signed). Plain `http://` is refused unless the server is this machine or the user
says `--insecure`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import ipaddress
import ssl
from urllib.parse import urlsplit

from appliance.errors import ApplianceError

__all__ = [
    "CA_PATH",
    "PIN_SEPARATOR",
    "ca_fingerprint",
    "check_transport",
    "client_context",
    "fetch_pinned_ca",
    "is_loopback",
    "split_code",
]

CA_PATH = "/api/v1/ca"
PIN_SEPARATOR = "#"
PIN_BYTES = 16  # 128 bits of the certificate's sha256: no forged CA matches it
MAX_CA_BYTES = 64 << 10


def ca_fingerprint(pem: str) -> str:
    """The pin of a CA certificate: base32 of the first 128 bits of its DER's sha256."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    return base64.b32encode(hashlib.sha256(der).digest()[:PIN_BYTES]).decode().rstrip("=")


def split_code(code: str) -> tuple[str, str | None]:
    """`ABCD-EFGH-JKLM#PIN` → the one-time code and the CA pin (None when the code has none)."""
    plain, sep, pin = code.strip().partition(PIN_SEPARATOR)
    pin = "".join(pin.split()).upper()
    return plain.strip(), (pin if sep and pin else None)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(server: str, insecure: bool) -> None:
    """Refuse a plain-HTTP lab server that is not on this machine, unless `insecure`."""
    parts = urlsplit(server)
    if parts.scheme == "http" and not insecure and not is_loopback(parts.hostname or ""):
        raise ApplianceError(
            f"lab server {server}: plain http:// is refused (tokens and patient images would "
            "cross the network readable); use https:// with the enrollment code's pin, or "
            "--insecure on a network you trust"
        )


def client_context(ca_pem: str | None) -> ssl.SSLContext:
    """Verify against the pinned lab CA only; without a pin, against the system's CAs (a lab
    that serves a certificate from a public CA)."""
    if ca_pem is None:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cadata=ca_pem)
    return context


def fetch_pinned_ca(server: str, pin: str, timeout: float = 30.0) -> str:
    """The lab CA's certificate (PEM), fetched from `server` and checked against `pin`."""
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise ApplianceError(f"lab server {server}: a pinned enrollment needs an https:// address")
    unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # the pin below is the check
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port, timeout=timeout, context=unverified
    )
    try:
        conn.request("GET", CA_PATH)
        reply = conn.getresponse()
        body = reply.read(MAX_CA_BYTES + 1)
    except (TimeoutError, OSError, http.client.HTTPException) as exc:
        raise ApplianceError(f"lab server {server}: cannot fetch its CA ({exc})") from exc
    finally:
        conn.close()
    if reply.status != 200 or len(body) > MAX_CA_BYTES:
        raise ApplianceError(f"lab server {server}: no lab CA at {CA_PATH} ({reply.status})")
    try:
        pem = body.decode("ascii")
        found = ca_fingerprint(pem)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApplianceError(f"lab server {server}: its CA is not a PEM certificate") from exc
    if found != pin:
        raise ApplianceError(
            f"lab server {server}: its CA fingerprint {found} is not the code's pin {pin}; "
            "someone may be between this tablet and the lab (nothing was sent)"
        )
    return pem
