"""Sending email over SMTP (STARTTLS or implicit TLS, optional auth) with aiosmtplib."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from spendgate.core.config_services import SmtpSettings
from spendgate.domain.errors import SpendgateError


class MailError(SpendgateError):
    """The SMTP server refused or could not be reached; worth retrying."""

    retriable = True


async def send_mail(smtp: SmtpSettings, message: EmailMessage) -> None:
    """Send ``message`` (its From defaults to ``smtp.sender``). Credentials are never logged."""
    if message["From"] is None:
        message["From"] = smtp.sender
    try:
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            start_tls=smtp.starttls,
            use_tls=smtp.use_tls,
            username=smtp.username,
            password=smtp.password.get_secret_value() if smtp.password else None,
            timeout=smtp.timeout_s,
            validate_certs=smtp.validate_certs,
            cert_bundle=str(smtp.ca_file) if smtp.ca_file else None,
        )
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise MailError(f"could not send mail via {smtp.host}:{smtp.port}: {exc}") from exc
