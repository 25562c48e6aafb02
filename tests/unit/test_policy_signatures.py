"""Policy version signatures: canonical bytes, Ed25519 signing and verification (a tampered field or another
key fails), and the signing key from the settings (file, PEM, base64, the default file made once)."""

from __future__ import annotations

import base64
import dataclasses
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from spendgate.core.config import Settings
from spendgate.core.policy_keys import DEFAULT_KEY_FILE, signing_key, verify_key
from spendgate.domain.errors import ConfigError
from spendgate.domain.policy_versions import canonical_json, key_id, sign, verify

AT = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)
DOC: dict[str, Any] = {"budgets": [{"scope": "team:platform", "daily": "40"}], "retry_cap": 3,
                       "routing_rules": [{"name": "small", "scope": "team:platform", "max_input_tokens": 8000,
                                          "timezone": "UTC", "model": "gpt-5.1-mini"}]}


def signed(key: Ed25519PrivateKey, doc: dict[str, Any] | None = None) -> Any:
    return sign(key, version_id="v2", parent="v1", action="apply", source=None, approver="oidc:alice",
                reason="cheaper mornings", created_at=AT, document=doc or DOC)


def test_canonical_json_is_independent_of_key_order_and_refuses_floats() -> None:
    """The same mapping in another key order gives the same bytes; a float is refused."""
    assert canonical_json({"b": 1, "a": [{"y": "é", "x": None}]}) == canonical_json({"a": [{"x": None, "y": "é"}],
                                                                                     "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()
    with pytest.raises(ValueError, match="no floats"):
        canonical_json({"daily": 40.5})


def test_a_signed_version_verifies_with_its_key() -> None:
    """A fresh version verifies with the public half of the key that signed it."""
    key = Ed25519PrivateKey.generate()
    version = signed(key)
    assert version.key_id == key_id(key.public_key())
    assert verify(key.public_key(), version).ok


@pytest.mark.parametrize("change", [
    {"document": {**DOC, "retry_cap": 4}},
    {"document": {**DOC, "routing_rules": []}},
    {"approver": "oidc:mallory"},
    {"reason": "nothing to see"},
    {"parent": "v0"},
    {"created_at": AT.replace(microsecond=0)},
    {"action": "rollback"},
    {"source": "v1"},
])
def test_any_tampered_field_fails_verification(change: dict[str, Any]) -> None:
    """Changing the document, approver, reason, parent, time, action or source breaks the signature."""
    key = Ed25519PrivateKey.generate()
    tampered = dataclasses.replace(signed(key), **change)
    verdict = verify(key.public_key(), tampered)
    assert not verdict.ok and "changed after signing" in verdict.problem


def test_another_key_or_a_garbled_signature_fails() -> None:
    """A version signed by another key names that key; a signature that is not base64 fails cleanly."""
    mine, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verdict = verify(mine.public_key(), signed(theirs))
    assert not verdict.ok and "signed with key" in verdict.problem
    garbled = dataclasses.replace(signed(mine), signature="not base64!")
    assert not verify(mine.public_key(), garbled).ok


def _pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def test_the_key_setting_takes_a_path_pem_text_or_base64(tmp_path: Path) -> None:
    """policy.signing_key as a file path, the PEM itself or 32 raw bytes in base64 are the same key."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pem"
    path.write_text(_pem(key))
    raw = base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode()
    public = key_id(key.public_key())
    for value in (str(path), _pem(key), raw):
        settings = Settings(data_dir=tmp_path, policy={"signing_key": value})
        assert key_id(signing_key(settings).public_key()) == public
        assert key_id(verify_key(settings)) == public
    pub_raw = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    assert key_id(verify_key(Settings(data_dir=tmp_path, policy={"verify_key": pub_raw}))) == public


def test_without_a_setting_the_key_file_is_made_once_private(tmp_path: Path) -> None:
    """The default key file is created at the first signature with mode 0600 and reused after."""
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ConfigError, match="no key to verify policy versions with"):
        verify_key(settings)
    first = key_id(signing_key(settings).public_key())
    path = tmp_path / DEFAULT_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key_id(signing_key(settings).public_key()) == first == key_id(verify_key(settings))


@pytest.mark.parametrize(("value", "message"), [
    ("/nonexistent/key.pem", "cannot read the key file"),
    ("/dev/zero", "/dev/zero is not a regular file"),  # read forever before
    ("/tmp", "/tmp is not a regular file"),
    ("  ", "policy.signing_key is empty"),  # said "cannot read the key file ."
    ("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----", "not an unencrypted Ed25519 private key"),
])
def test_a_bad_key_setting_is_a_clear_config_error(tmp_path: Path, value: str, message: str) -> None:
    """A missing file, a device or directory, an empty value or a PEM that is no key names the setting and the
    problem, at once."""
    with pytest.raises(ConfigError, match=message) as err:
        signing_key(Settings(data_dir=tmp_path, policy={"signing_key": value}))
    assert "policy.signing_key" in err.value.message
