"""Targets by name → ready channels, built from the rules, the secrets and the SMTP settings."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from spendgate.alerter.channels import Channel, DeliveryError
from spendgate.alerter.email import EmailChannel
from spendgate.alerter.pagerduty import PagerDutyChannel
from spendgate.alerter.secrets import Secrets
from spendgate.alerter.slack import SlackChannel
from spendgate.alerter.teams import TeamsChannel
from spendgate.alerter.webhook import WebhookChannel
from spendgate.core.alert_routes import DEVELOPER, Rules, TargetSpec
from spendgate.core.config_services import SmtpSettings
from spendgate.domain.errors import ConfigError

DEVELOPER_PREFIX = f"{DEVELOPER}:"


def developer_target(developer: str) -> str:
    return f"{DEVELOPER_PREFIX}{developer}"


class Directory:
    """Resolves a job's target name (``slack:platform-em``, ``developer:alice``) to its channel."""

    def __init__(self, rules: Rules, secrets: Secrets, smtp: SmtpSettings, session: aiohttp.ClientSession,
                 *, timeout_s: float, routes_file: str = "<routes>") -> None:
        self.rules, self._smtp = rules, smtp
        self._channels: dict[str, Channel] = {
            name: _build(spec, secrets, smtp, session, timeout_s, routes_file) for name, spec in rules.targets.items()
        }

    def kind_of(self, target: str) -> str:
        return "email" if target.startswith(DEVELOPER_PREFIX) else target.partition(":")[0]

    def get(self, target: str) -> Channel:
        if target in self._channels:
            return self._channels[target]
        if target.startswith(DEVELOPER_PREFIX) and self.rules.developer_email:
            developer = target.removeprefix(DEVELOPER_PREFIX)
            address = self.rules.developer_email.format(developer=developer)
            return EmailChannel(target, [address], self._smtp)
        raise DeliveryError(f"target {target!r} is not configured any more", retriable=False)


def check_url(spec: TargetSpec, url: str, routes_file: str) -> None:
    """An http(s) URL with a host; the error never echoes the value (webhook URLs are secrets)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{routes_file}:{spec.line}: target {spec.name!r}: url must be an http(s) URL")


def _build(spec: TargetSpec, secrets: Secrets, smtp: SmtpSettings, session: aiohttp.ClientSession,
           timeout_s: float, routes_file: str) -> Channel:
    def value(key: str) -> str:
        resolved = secrets.resolve(spec.value(key), routes_file=routes_file)
        if key == "url":
            check_url(spec, resolved, routes_file)
        return resolved

    if spec.kind == "slack":
        return SlackChannel(spec.name, value("url"), session, timeout_s=timeout_s)
    if spec.kind == "teams":
        return TeamsChannel(spec.name, value("url"), session, timeout_s=timeout_s)
    if spec.kind == "pagerduty":
        return PagerDutyChannel(spec.name, value("url"), value("routing_key"), session, timeout_s=timeout_s)
    if spec.kind == "webhook":
        return WebhookChannel(spec.name, value("url"), value("signing_secret"), session, timeout_s=timeout_s)
    to = spec.options["to"]
    assert isinstance(to, tuple)
    return EmailChannel(spec.name, to, smtp)
