"""Mail goes out over STARTTLS with authentication to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from spendgate.core.config_services import SmtpSettings
from spendgate.core.mail import MailError, send_mail
from tests.support.ports import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"finops", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
                            authenticator=check_login, auth_required=True)
    controller.start()
    yield inbox, port, ca_file
    controller.stop()


def message() -> EmailMessage:
    msg = EmailMessage()
    msg["To"], msg["Subject"] = "finops@example.com", "spendgate test"
    msg.set_content("plain part")
    msg.add_alternative("<p>html part</p>", subtype="html")
    return msg


async def test_starttls_with_auth_delivers(tls_smtp: tuple[Inbox, int, Path]) -> None:
    """With STARTTLS, the relay's CA trusted and the right credentials, the message arrives."""
    inbox, port, ca_file = tls_smtp
    smtp = SmtpSettings(host="127.0.0.1", port=port, starttls=True, username="finops", password="s3cret",
                        ca_file=ca_file, sender="spendgate@example.com")
    await send_mail(smtp, message())
    assert len(inbox.messages) == 1
    assert b"html part" in inbox.messages[0] and b"From: spendgate@example.com" in inbox.messages[0]


async def test_untrusted_certificate_and_bad_password_fail_clearly(tls_smtp: tuple[Inbox, int, Path]) -> None:
    """An untrusted certificate or wrong password raise a retriable MailError; nothing is delivered."""
    inbox, port, ca_file = tls_smtp
    with pytest.raises(MailError) as untrusted:
        await send_mail(SmtpSettings(host="127.0.0.1", port=port, starttls=True, username="finops",
                                     password="s3cret", timeout_s=5), message())
    assert untrusted.value.retriable
    with pytest.raises(MailError) as refused:
        await send_mail(SmtpSettings(host="127.0.0.1", port=port, starttls=True, username="finops",
                                     password="wrong", ca_file=ca_file, timeout_s=5), message())
    assert "wrong" not in refused.value.message
    assert inbox.messages == []
