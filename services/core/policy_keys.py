"""The policy signing key, from the settings (``policy.signing_key`` / ``policy.verify_key``).

A key setting is a path to a PEM file, the PEM text itself, or 32 raw key bytes in base64. Without a
``signing_key`` the key lives in ``<data_dir>/policy-signing-key.pem``, made (mode 0600) when the first
version is signed. Every failure is a :class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from spendgate.core.config import Settings
from spendgate.domain.errors import ConfigError

DEFAULT_KEY_FILE = "policy-signing-key.pem"
MAX_KEY_FILE_BYTES = 16_384


def default_key_path(settings: Settings) -> Path:
    return settings.data_dir / DEFAULT_KEY_FILE


def _material(value: str, what: str) -> bytes:
    """The PEM text or raw bytes a setting stands for (reading the file it names)."""
    text = value.strip()
    if not text:
        raise ConfigError(f"{what} is empty: a path to a PEM file, the PEM text, or 32 key bytes in base64")
    if text.startswith("-----BEGIN"):
        return text.encode()
    if len(text) == 44 and text.endswith("="):
        try:
            return base64.b64decode(text, validate=True)
        except binascii.Error:
            pass
    path = Path(text).expanduser()
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # /dev/zero has size 0 and never ends; a FIFO may never answer
            raise ConfigError(f"{what}: {path} is not a regular file")
        with path.open("rb") as f:
            material = f.read(MAX_KEY_FILE_BYTES + 1)
        if len(material) > MAX_KEY_FILE_BYTES:
            raise ConfigError(f"{what}: {path} is too large for a key file")
        return material
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read the key file {path} ({exc.strerror or exc})") from None


def _private(material: bytes, what: str) -> Ed25519PrivateKey:
    try:
        key = (Ed25519PrivateKey.from_private_bytes(material) if len(material) == 32
               else load_pem_private_key(material, password=None))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: not an unencrypted Ed25519 private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what}: the key is not an Ed25519 key")
    return key


def _public(material: bytes, what: str) -> Ed25519PublicKey:
    try:
        key = (Ed25519PublicKey.from_public_bytes(material) if len(material) == 32
               else load_pem_public_key(material))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: not an Ed25519 public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what}: the key is not an Ed25519 key")
    return key


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The key that signs new versions; the default file is created on first use."""
    configured = settings.policy.signing_key
    if configured is not None:
        return _private(_material(configured.get_secret_value(), "policy.signing_key"), "policy.signing_key")
    path = default_key_path(settings)
    if not path.exists():
        _create(path)
    return _private(_material(str(path), f"the policy signing key {path}"), f"the policy signing key {path}")


def _create(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    except OSError as exc:
        raise ConfigError(f"cannot create the policy signing key {path} ({exc.strerror or exc}); "
                          "set policy.signing_key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def verify_key(settings: Settings) -> Ed25519PublicKey:
    """The key versions are checked with: ``policy.verify_key``, else the signing key's public half."""
    if settings.policy.verify_key is not None:
        return _public(_material(settings.policy.verify_key, "policy.verify_key"), "policy.verify_key")
    if settings.policy.signing_key is None and not default_key_path(settings).exists():
        raise ConfigError(f"no key to verify policy versions with: set policy.verify_key (the public key) or "
                          f"policy.signing_key; {default_key_path(settings)} does not exist")
    return signing_key(settings).public_key()
