"""A real Apache Kafka broker with secured listeners, for the SASL and TLS client tests.

Beside the plain listener (which the readiness check and the controller keep using) it opens:

- ``SASL_SSL`` on :attr:`SecureKafkaBroker.sasl_port`: TLS with a server certificate from a ``trustme``
  CA, logins with SCRAM-SHA-512 (the user is written into the metadata log at format time,
  ``kafka-storage format --add-scram``), SCRAM-SHA-256 and PLAIN;
- ``SSL`` on :attr:`SecureKafkaBroker.mtls_port`: mutual TLS, a client certificate from the same CA required.

:func:`write_pki` makes the certificates as files, the way an operator would hand them to spendgate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme

from tests.support.certs import pkcs8_pem
from tests.support.kafka import KafkaBroker
from tests.support.ports import free_ports

SCRAM_USER = "spendgate-scram"
PLAIN_USER = "spendgate-plain"


@dataclass(frozen=True)
class Pki:
    """Certificate files: the broker's, a client's for mutual TLS, and a second CA nobody trusts."""

    ca: Path
    """The CA that signed the broker's and the client's certificates."""
    server: Path
    """The broker's PEM keystore: PKCS#8 key and certificate chain in one file (Kafka's PEM format)."""
    client_cert: Path
    client_key: Path
    """The client's key, encrypted with :attr:`client_key_password`."""
    client_key_password: str
    other_ca: Path
    """A CA that signed nothing here: trusting only it must refuse the broker."""


def write_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("spendgate-client")
    pki = Pki(ca=directory / "ca.pem", server=directory / "server.pem", client_cert=directory / "client.pem",
              client_key=directory / "client.key", client_key_password="client-key-secret",
              other_ca=directory / "other-ca.pem")
    ca.cert_pem.write_to_path(str(pki.ca))
    other.cert_pem.write_to_path(str(pki.other_ca))
    pki.server.write_bytes(pkcs8_pem(server.private_key_pem.bytes())
                           + b"".join(c.bytes() for c in server.cert_chain_pems))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    pki.client_key.write_bytes(pkcs8_pem(client.private_key_pem.bytes(), pki.client_key_password))
    return pki


class SecureKafkaBroker(KafkaBroker):
    """:class:`KafkaBroker` plus a SASL_SSL listener (SCRAM and PLAIN users) and a mutual-TLS listener."""

    def __init__(self, base_dir: Path, pki: Pki, *, scram_password: str, plain_password: str) -> None:
        super().__init__(base_dir)
        self.port, self.controller_port, self.sasl_port, self.mtls_port = free_ports(4)
        self.pki = pki
        self.scram_password, self.plain_password = scram_password, plain_password

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"127.0.0.1:{self.mtls_port}"

    def _properties(self) -> dict[str, str]:
        props = super()._properties()
        plain = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
                 f'user_{PLAIN_USER}="{self.plain_password}";')
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return {
            **props,
            "listeners": f"{props['listeners']},SASL_SSL://127.0.0.1:{self.sasl_port},SSL://127.0.0.1:{self.mtls_port}",
            "advertised.listeners": (f"{props['advertised.listeners']},SASL_SSL://127.0.0.1:{self.sasl_port},"
                                     f"SSL://127.0.0.1:{self.mtls_port}"),
            "listener.security.protocol.map": f"{props['listener.security.protocol.map']},SASL_SSL:SASL_SSL,SSL:SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.server),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca),
            "listener.name.ssl.ssl.client.auth": "required",
        }

    def _format_args(self) -> list[str]:
        return [
            "--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={self.scram_password}]",
            "--add-scram", f"SCRAM-SHA-256=[name={SCRAM_USER},password={self.scram_password}]",
        ]
