"""The lab server's TLS: a lab CA made at first start, or a certificate the lab gives.

The CA's private key never leaves the lab folder; each start issues a fresh server
certificate from it for the names the server answers to, so the pin tablets hold (the CA's
fingerprint, carried by every enrollment code) survives new names and addresses. With a
given certificate, the last certificate of its chain file is what tablets pin.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.errors import ApplianceError
from appliance.security.home import write_private
from appliance.security.tls import ca_fingerprint

__all__ = ["TLS_DIR", "TlsFiles", "given_tls", "lab_ca_pem", "lab_tls"]

TLS_DIR = "tls"
IN_USE = "ca-in-use.pem"  # what the running server's tablets pin; `enroll` reads it


@dataclass(frozen=True)
class TlsFiles:
    """What uvicorn serves (`certfile`, `keyfile`) and what tablets pin (`ca_pem`, `pin`)."""

    certfile: Path
    keyfile: Path
    ca_pem: str

    @property
    def pin(self) -> str:
        return ca_fingerprint(self.ca_pem)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _lab_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The lab CA (made on first use, ten years)."""
    cert_path, key_path = folder / "ca.pem", folder / "ca.key"
    if not cert_path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appliance lab CA")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(days=1))
            .not_valid_after(_now() + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        write_private(key_path, _key_pem(key))
        write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    loaded = serialization.load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise ApplianceError(f"{key_path}: not the lab CA's key")
    return cert, loaded


def _names(host: str, extra: list[str]) -> list[x509.GeneralName]:
    """Every name the server may be reached by: loopback, this host's names and addresses,
    the listening address and the names the lab adds (--tls-name)."""
    words = {"localhost", "127.0.0.1", "::1", host, *extra}
    for name in (socket.gethostname(), socket.getfqdn()):
        words.add(name)
        with contextlib.suppress(OSError):
            words.update(socket.gethostbyname_ex(name)[2])
    out: list[x509.GeneralName] = []
    for word in sorted(w for w in words if w and w not in ("0.0.0.0", "::")):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(word)))
        except ValueError:
            out.append(x509.DNSName(word))
    return out


def lab_tls(root: Path, host: str, names: Sequence[str] = ()) -> TlsFiles:
    """The lab CA and a server certificate freshly issued from it for this start."""
    folder = Path(root) / TLS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca, ca_key = _lab_ca(folder)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appliance lab")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(days=1))
        .not_valid_after(_now() + dt.timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(_names(host, list(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(folder / "server.key", _key_pem(key))
    write_private(folder / "server.pem", cert.public_bytes(serialization.Encoding.PEM))
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    write_private(folder / IN_USE, ca_pem.encode())
    return TlsFiles(folder / "server.pem", folder / "server.key", ca_pem)


def given_tls(root: Path, certfile: Path, keyfile: Path) -> TlsFiles:
    """A certificate the lab gives (PEM chain, leaf first); tablets pin its last certificate."""
    try:
        chain = x509.load_pem_x509_certificates(Path(certfile).read_bytes())
        Path(keyfile).read_bytes()
    except (OSError, ValueError) as exc:
        raise ApplianceError(f"{certfile}: not a usable PEM certificate chain ({exc})") from exc
    ca_pem = chain[-1].public_bytes(serialization.Encoding.PEM).decode()
    folder = Path(root) / TLS_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(folder / IN_USE, ca_pem.encode())
    return TlsFiles(Path(certfile), Path(keyfile), ca_pem)


def lab_ca_pem(root: Path) -> str:
    """The CA tablets pin: the running server's, else the lab CA (made now if need be)."""
    folder = Path(root) / TLS_DIR
    if (folder / IN_USE).exists():
        return (folder / IN_USE).read_text()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return _lab_ca(folder)[0].public_bytes(serialization.Encoding.PEM).decode()
