"""Policy versions: the canonical bytes of a version and its Ed25519 signature. Pure: no I/O.

Every ``policy apply`` and ``policy rollback`` stores a new version; the newest is the active one, so
history only grows. A version is signed over the canonical JSON of everything that says what it is and
who wanted it: its id, parent, action (``apply`` / ``rollback``), the version a rollback restores, the
approver, the reason, when it was made, and the policy document. Canonical JSON: keys sorted, no spaces,
UTF-8, no floats (the document carries money as exact decimal strings). A change to any of those fields
in the database makes :func:`verify` fail.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

VersionAction = Literal["apply", "rollback"]
MAX_REASON_CHARS = 500
MAX_APPROVER_CHARS = 200


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One stored version of the policy."""

    version_id: str
    parent: str | None
    """The version that was active when this one was made (None for the first)."""
    action: VersionAction
    source: str | None
    """For a rollback, the version whose document it restores."""
    approver: str
    reason: str
    created_at: datetime
    document: dict[str, Any]
    """The policy in the proposal format (``spendgate policy show``), routing rules included."""
    key_id: str
    """Which key signed it (:func:`key_id`)."""
    signature: str
    """Base64 Ed25519 signature over :func:`signed_bytes`."""
    seq: int = 0
    """Its place in the history (the store's order; not signed: ids and parents already order it)."""


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no spaces, UTF-8; floats refused (they have no one spelling)."""
    _no_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _no_floats(value: Any) -> None:
    if isinstance(value, float):
        raise ValueError("a signed policy document holds no floats (money is an exact decimal string)")
    if isinstance(value, dict):
        for v in value.values():
            _no_floats(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _no_floats(v)


def signed_bytes(*, version_id: str, parent: str | None, action: VersionAction, source: str | None,
                 approver: str, reason: str, created_at: datetime, document: dict[str, Any]) -> bytes:
    """The bytes a version's signature covers."""
    return canonical_json({
        "version_id": version_id, "parent": parent, "action": action, "source": source, "approver": approver,
        "reason": reason, "created_at": created_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "document": document,
    })


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of the SHA-256 of its raw bytes."""
    return hashlib.sha256(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def sign(private: Ed25519PrivateKey, *, version_id: str, parent: str | None, action: VersionAction,
         source: str | None, approver: str, reason: str, created_at: datetime,
         document: dict[str, Any]) -> PolicyVersion:
    """A new signed version."""
    data = signed_bytes(version_id=version_id, parent=parent, action=action, source=source, approver=approver,
                        reason=reason, created_at=created_at, document=document)
    return PolicyVersion(version_id, parent, action, source, approver, reason, created_at, document,
                         key_id(private.public_key()), base64.b64encode(private.sign(data)).decode())


@dataclass(frozen=True, slots=True)
class Verdict:
    version_id: str
    ok: bool
    problem: str = ""
    """Why it failed, in words: another key, a bad signature (the row was changed), an unreadable one."""


def verify(public: Ed25519PublicKey, version: PolicyVersion) -> Verdict:
    """Whether ``version``'s signature holds for its fields under ``public``."""
    if version.key_id != key_id(public):
        return Verdict(version.version_id, False,
                       f"signed with key {version.key_id}, not the configured key {key_id(public)}")
    try:
        signature = base64.b64decode(version.signature, validate=True)
        data = signed_bytes(version_id=version.version_id, parent=version.parent, action=version.action,
                            source=version.source, approver=version.approver, reason=version.reason,
                            created_at=version.created_at, document=version.document)
        public.verify(signature, data)
    except (InvalidSignature, ValueError):
        return Verdict(version.version_id, False,
                       "the signature does not match the stored version: it was changed after signing")
    return Verdict(version.version_id, True)
