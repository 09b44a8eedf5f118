"""Which lab a project syncs with, and the device credentials for it, on this tablet.

The project keeps only an id (`credential_id` in its sync state); the token, server and
pinned CA live in the appliance home (`appliance.security.credentials`). Projects enrolled
before that kept their token in `project.db`: it moves out on their next sync.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from appliance.security.credentials import (
    LabCredentials,
    forget_credentials,
    load_credentials,
    save_credentials,
)
from appliance.security.lock import lock_tablet
from appliance.security.signing import PublicKey
from appliance.security.tls import fetch_pinned_ca, is_loopback, split_code
from appliance.security.trust import pin_key
from appliance.store import Project, at_rest, sync_log
from appliance.sync.http import LabHttp, Retry

__all__ = [
    "forget_proposed_token",
    "pinned_connection",
    "project_credentials",
    "proposed_token",
    "remember_enrollment",
    "revoked",
]


def pinned_connection(
    server: str, code: str, retry: Retry | None, insecure: bool, timeout: float = 30.0
) -> LabHttp:
    """A connection for enrolling: to an https server whose CA matches the code's pin (or the
    system's CAs when the code has no pin); plain http only on loopback or `insecure`."""
    _plain, pin = split_code(code)
    ca = fetch_pinned_ca(server, pin, timeout) if pin and server.startswith("https:") else None
    return LabHttp(server, retry=retry, timeout=timeout, ca=ca, insecure=insecure)


def _enrolling_id(server: str, code: str) -> str:
    plain, _pin = split_code(code)
    return "enrolling" + hashlib.sha256(f"{server.rstrip('/')}\n{plain}".encode()).hexdigest()


def proposed_token(server: str, code: str) -> str:
    """The token this tablet proposes when it redeems `code` at `server`: the same one on
    every try until the enrollment is remembered, so a run whose every reply was lost can be
    run again with the same code (the server recognises the device instead of refusing a used
    code). Kept sealed beside the credentials, never in the project folder."""
    credential_id = _enrolling_id(server, code)
    kept = load_credentials(credential_id)
    if kept is not None:
        return kept.token
    token = secrets.token_urlsafe(32)
    save_credentials(credential_id, LabCredentials(server.rstrip("/"), token, ""))
    return token


def forget_proposed_token(server: str, code: str) -> None:
    """The enrollment went through: the proposed token now lives in the credentials."""
    forget_credentials(_enrolling_id(server, code))


def remember_enrollment(project: Project, http: LabHttp, reply: dict[str, Any]) -> None:
    """Keep the new token outside the project and pin the lab's bundle-signing key, unless
    it came over plain HTTP across a network (--insecure): a key anyone on the path could have
    swapped is not trusted to vouch for models; pin it from its file (`appliance trust-key`).
    """
    if reply.get("lab_key") and (http.scheme == "https" or is_loopback(http.host)):
        pin_key(PublicKey.from_text(str(reply["lab_key"]), "the lab's key"), http.server)
    credential_id = sync_log.get_state(project, "credential_id") or uuid.uuid4().hex
    creds = LabCredentials(
        http.server, str(reply["token"]), str(reply["project"]), http.ca, http.insecure
    )
    save_credentials(credential_id, creds)
    sync_log.set_state(project, credential_id=credential_id)
    if sync_log.get_state(project, "token") is not None:
        sync_log.erase_state(project, "token")


def project_credentials(project: Project) -> LabCredentials | None:
    """This tablet's credentials for `project`; a token still in `project.db` moves out."""
    credential_id = sync_log.get_state(project, "credential_id")
    old_token = sync_log.get_state(project, "token")
    if old_token and credential_id is None:
        server, lab_project = (
            sync_log.get_state(project, "server"),
            sync_log.get_state(project, "lab_project"),
        )
        if server and lab_project:
            credential_id = uuid.uuid4().hex
            save_credentials(credential_id, LabCredentials(server, old_token, lab_project))
            sync_log.set_state(project, credential_id=credential_id)
            sync_log.erase_state(project, "token")
    return load_credentials(credential_id) if credential_id else None


def revoked(project: Project, creds: LabCredentials) -> None:
    """The lab revoked this device: forget the credentials, lock every project, and
    crypto-erase this project when it is encrypted at rest (its wrapped keys deleted: work not
    yet synced is lost with it, which is what a revoke of a stolen tablet asks for)."""
    credential_id = sync_log.get_state(project, "credential_id")
    if credential_id:
        forget_credentials(credential_id)
    lock_tablet(creds.server)
    at_rest.erase_keys(project.root, f"the lab {creds.server} revoked this tablet")
