"""A tablet's lab credentials, kept outside the project folder and bound to this device.

The token that lets a tablet sync must not travel with the project folder (USB copies,
backups, a folder left on a shared drive), so it lives in the appliance home
(`credentials/<id>.json`, owner-only) under an id the project keeps. The token is sealed
(AES-GCM) under a key derived from this machine's identity and a random secret of the
appliance home: the credentials file copied to another machine opens nowhere.
(An OS keyring would add a login password; the kiosk tablets have none, docs/security.md.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ApplianceError
from appliance.security.home import appliance_home, write_private

__all__ = [
    "LabCredentials",
    "forget_credentials",
    "load_credentials",
    "machine_id",
    "save_credentials",
]

DIR = "credentials"
SECRET = "device.secret"
_CONTEXT = b"appliance device credentials v1\n"


def machine_id() -> bytes:
    """This machine's stable identity (Linux machine-id, Windows MachineGuid); empty when the
    platform offers none, and the home's random secret alone binds the file."""
    if sys.platform == "win32":
        try:
            import winreg

            with winreg.OpenKey(
                winreg.HKEY_LOCAL_MACHINE, r"SOFTWARE\Microsoft\Cryptography"
            ) as key:
                return str(winreg.QueryValueEx(key, "MachineGuid")[0]).encode()
        except OSError:
            return b""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(path).read_bytes().strip()
        except OSError:
            continue
    return b""


def _device_key() -> bytes:
    path = appliance_home() / SECRET
    if not path.exists():
        write_private(path, secrets.token_bytes(32))
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot be read ({exc.strerror})") from exc
    return hashlib.sha256(_CONTEXT + secret + b"\0" + machine_id()).digest()


@dataclass(frozen=True)
class LabCredentials:
    """Where a project syncs and how: server address, token, lab project, pinned CA (PEM)."""

    server: str
    token: str
    lab_project: str
    ca: str | None = None
    insecure: bool = False


def _path(credential_id: str) -> Path:
    if not credential_id.isalnum():
        raise ApplianceError(f"credential id {credential_id!r} is not a plain id")
    return appliance_home() / DIR / f"{credential_id}.json"


def save_credentials(credential_id: str, creds: LabCredentials) -> Path:
    """Write the credentials of the project that keeps `credential_id` (owner-only, sealed)."""
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_device_key()).encrypt(nonce, creds.token.encode(), credential_id.encode())
    doc = {
        "server": creds.server,
        "lab_project": creds.lab_project,
        "ca": creds.ca,
        "insecure": creds.insecure,
        "token": base64.b64encode(nonce + sealed).decode(),
    }
    path = _path(credential_id)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{path.parent}: cannot be created ({exc.strerror})") from exc
    write_private(path, json.dumps(doc, indent=1).encode())
    return path


def load_credentials(credential_id: str) -> LabCredentials | None:
    """The credentials for `credential_id`, None when this tablet has none (a copied project)."""
    path = _path(credential_id)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ApplianceError(f"{path}: unreadable lab credentials ({exc})") from exc
    try:
        raw = base64.b64decode(doc["token"], validate=True)
        token = AESGCM(_device_key()).decrypt(raw[:12], raw[12:], credential_id.encode())
        return LabCredentials(
            str(doc["server"]),
            token.decode(),
            str(doc["lab_project"]),
            doc.get("ca"),
            bool(doc.get("insecure", False)),
        )
    except InvalidTag as exc:
        raise ApplianceError(
            f"{path}: these lab credentials belong to another device; enroll this tablet "
            "with a new code"
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ApplianceError(f"{path}: not a lab credentials file ({exc})") from exc


def forget_credentials(credential_id: str) -> None:
    """Remove the credentials (a revoked tablet keeps nothing that could sync)."""
    path = _path(credential_id)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ApplianceError(f"{path}: cannot be removed ({exc.strerror})") from exc
