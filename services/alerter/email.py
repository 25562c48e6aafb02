"""Email over SMTP (STARTTLS / TLS and auth from the shared SMTP settings): text and HTML parts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from email.message import EmailMessage

from spendgate.alerter.channels import DeliveryError, plain_text, session_text
from spendgate.core.config_services import SmtpSettings
from spendgate.core.mail import MailError, send_mail
from spendgate.domain.alerts import Action, Message


def render_html(message: Message) -> str:
    e = html.escape
    rows = "".join(f"<tr><th align='left'>{e(f.label)}</th><td>{e(f.value)}</td></tr>" for f in message.facts)
    parts = [f"<h2>{e(message.title)}</h2>", f"<p>{e(message.summary)}</p>"]
    if rows:
        parts.append(f"<table cellpadding='4'>{rows}</table>")
    if message.sessions:
        items = "".join(f"<li><code>{e(session_text(s))}</code></li>" for s in message.sessions)
        parts.append(f"<h3>Top sessions by cost this period</h3><ol>{items}</ol>")
    if message.lines:
        parts.append("".join(f"<p>{e(line)}</p>" for line in message.lines))
    parts.append(f"<p style='color:#777'>spendgate alert {e(message.alert_id)} · scope {e(message.scope)}</p>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def build_email(message: Message, to: Sequence[str], sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.title
    mail["From"] = sender
    mail["To"] = ", ".join(to)
    mail["X-Spendgate-Alert"] = message.alert_id
    mail.set_content(plain_text(message))
    mail.add_alternative(render_html(message), subtype="html")
    return mail


class EmailChannel:
    def __init__(self, name: str, to: Sequence[str], smtp: SmtpSettings) -> None:
        self.name, self._to, self._smtp = name, tuple(to), smtp

    def __repr__(self) -> str:
        return f"EmailChannel({self.name!r})"

    async def send(self, message: Message, action: Action) -> int | None:
        try:
            await send_mail(self._smtp, build_email(message, self._to, self._smtp.sender))
        except MailError as exc:
            raise DeliveryError(exc.message) from exc
        return None
