"""Wiring the alerter's parts from the settings: rules, secrets, channels, deliverer, dispatcher."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg

from spendgate.alerter.delivery import Clock, Deliverer, RetryPolicy, utc_now
from spendgate.alerter.secrets import Secrets
from spendgate.alerter.targets import Directory, check_url
from spendgate.core.alert_routes import Rules, load_rules
from spendgate.core.bus import Bus
from spendgate.core.config import Settings
from spendgate.core.metrics import Metrics
from spendgate.core.tracing import Tracer


@dataclass
class Alerter:
    settings: Settings
    rules: Rules
    directory: Directory
    deliverer: Deliverer
    policy: RetryPolicy
    clock: Clock


def load_checked_rules(settings: Settings) -> tuple[Rules, Secrets]:
    """Rules and secrets, validated: a ConfigError naming the file and line when anything is off."""
    alerts = settings.alerts
    rules = load_rules(alerts.routes_file)
    secrets = Secrets.from_settings(alerts)
    routes_file = str(alerts.routes_file)
    secrets.check(rules, routes_file=routes_file)
    for spec in rules.targets.values():
        if "url" in spec.options:
            check_url(spec, secrets.resolve(spec.value("url")), routes_file)
    return rules, secrets


def retry_policy(settings: Settings) -> RetryPolicy:
    a = settings.alerts
    return RetryPolicy(max_attempts=a.max_attempts, base_s=a.backoff_base_s, max_s=a.backoff_max_s,
                       retry_after_max_s=a.retry_after_max_s)


def lease_s(settings: Settings, attempt_timeout_s: float) -> float:
    """How long a claimed job is ours without renewal: longer than any wait between two attempts."""
    a = settings.alerts
    return max(a.backoff_max_s, a.retry_after_max_s) + attempt_timeout_s + 60


@contextlib.asynccontextmanager
async def open_alerter(settings: Settings, pool: asyncpg.Pool, bus: Bus, *, clock: Clock = utc_now,
                       owner: str | None = None, metrics: Metrics | None = None,
                       tracer: Tracer | None = None) -> AsyncIterator[Alerter]:
    """The alerter's parts; ``owner`` names who claims jobs (default: this instance, stable across restarts);
    deliveries are counted in ``metrics`` and traced by ``tracer`` when given."""
    rules, secrets = load_checked_rules(settings)
    alerts = settings.alerts
    async with aiohttp.ClientSession() as http:
        directory = Directory(rules, secrets, secrets.smtp(settings.smtp), http, timeout_s=alerts.request_timeout_s,
                              routes_file=str(alerts.routes_file))
        attempt_timeout_s = max(alerts.request_timeout_s, settings.smtp.timeout_s) + 5
        deliverer = Deliverer(pool, bus, directory, source=f"spendgate/alerter/{settings.instance}",
                              owner=owner or settings.instance, lease_s=lease_s(settings, attempt_timeout_s),
                              attempt_timeout_s=attempt_timeout_s, clock=clock, metrics=metrics, tracer=tracer)
        yield Alerter(settings, rules, directory, deliverer, retry_policy(settings), clock)
