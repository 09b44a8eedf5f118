"""Which lab a project syncs with, and the device credentials for it, on this tablet.

The project keeps only an id (`credential_id` in its sync state); the token, server and
pinned CA live in the appliance home (`appliance.security.credentials`). Projects enrolled
before that kept their token in `project.db`: it moves out on their next sync.
"""

from __future__ import annotations

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
from appliance.store import Project, oplog
from appliance.sync.http import LabHttp, Retry

__all__ = ["pinned_connection", "project_credentials", "remember_enrollment", "revoked"]


def pinned_connection(
    server: str, code: str, retry: Retry | None, insecure: bool, timeout: float = 30.0
) -> LabHttp:
    """A connection for enrolling: to an https server whose CA matches the code's pin (or the
    system's CAs when the code has no pin); plain http only on loopback or `insecure`."""
    _plain, pin = split_code(code)
    ca = fetch_pinned_ca(server, pin, timeout) if pin and server.startswith("https:") else None
    return LabHttp(server, retry=retry, timeout=timeout, ca=ca, insecure=insecure)


def remember_enrollment(project: Project, http: LabHttp, reply: dict[str, Any]) -> None:
    """Keep the new token outside the project and pin the lab's bundle-signing key, unless
    it came over plain HTTP across a network (--insecure): a key anyone on the path could have
    swapped is not trusted to vouch for models; pin it from its file (`appliance trust-key`).
    """
    if reply.get("lab_key") and (http.scheme == "https" or is_loopback(http.host)):
        pin_key(PublicKey.from_text(str(reply["lab_key"]), "the lab's key"), http.server)
    credential_id = oplog.get_state(project.db, "credential_id") or uuid.uuid4().hex
    creds = LabCredentials(
        http.server, str(reply["token"]), str(reply["project"]), http.ca, http.insecure
    )
    save_credentials(credential_id, creds)
    oplog.set_state(project.db, credential_id=credential_id)
    if oplog.get_state(project.db, "token") is not None:
        oplog.erase_state(project.db, "token")


def project_credentials(project: Project) -> LabCredentials | None:
    """This tablet's credentials for `project`; a token still in `project.db` moves out."""
    db = project.db
    credential_id = oplog.get_state(db, "credential_id")
    old_token = oplog.get_state(db, "token")
    if old_token and credential_id is None:
        server, lab_project = oplog.get_state(db, "server"), oplog.get_state(db, "lab_project")
        if server and lab_project:
            credential_id = uuid.uuid4().hex
            save_credentials(credential_id, LabCredentials(server, old_token, lab_project))
            oplog.set_state(db, credential_id=credential_id)
            oplog.erase_state(db, "token")
    return load_credentials(credential_id) if credential_id else None


def revoked(project: Project, creds: LabCredentials) -> None:
    """The lab revoked this device: forget the credentials and lock every project."""
    credential_id = oplog.get_state(project.db, "credential_id")
    if credential_id:
        forget_credentials(credential_id)
    lock_tablet(creds.server)
