"""Certificate files for the TLS tests (``trustme`` makes the certificates)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization


def pkcs8_pem(key_pem: bytes, password: str | None = None) -> bytes:
    """``key_pem`` as PKCS#8 PEM (what Kafka's PEM keystore reads; trustme writes SEC1 EC keys), encrypted
    with ``password`` when given."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
