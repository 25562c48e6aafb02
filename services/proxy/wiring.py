"""Build and start a proxy's enforcement stack from the settings: the one call the proxy makes.

    async with enforcement(settings, pool, dsn) as enforcer:
        admission = enforcer.admit(...)

Checks at start-up that every cascade model has a price (a ConfigError now, not at 95 %), loads
budgets and balances, and keeps the view fresh until the context exits. The alert routes file
(``alerts.routes_file``) is read once here, so a pause response names who was alerted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime

import asyncpg

from spendgate.core.alert_routes import load_rules
from spendgate.core.config import Settings
from spendgate.core.logs import get_logger
from spendgate.core.policy_keys import default_key_path, verify_key
from spendgate.core.supervisor import Supervisor
from spendgate.domain.enforcement.enforcer import Enforcer
from spendgate.domain.enforcement.policy import Policy
from spendgate.domain.enforcement.retry import RetryDetector
from spendgate.domain.errors import ConfigError
from spendgate.domain.events import new_id
from spendgate.domain.policy_versions import PolicyVersion, Verdict, verify
from spendgate.proxy.view import BalanceView

log = get_logger(__name__)
Recipients = Callable[[Mapping[str, str | None]], list[str]]


def alert_recipients(settings: Settings) -> Recipients | None:
    """Who the alert routes notify of an alert, by its route facts; None without a readable routes file
    (the pause then names "your spendgate admin": a broken routes file must not stop metering)."""
    path = settings.alerts.routes_file
    if path is None:
        return None
    try:
        return load_rules(path).recipients
    except ConfigError as exc:
        log.warning("alert routes not readable; pause responses will not name recipients", error=exc.message)
        return None


def version_verifier(settings: Settings) -> Callable[[PolicyVersion], Verdict] | None:
    """Checks a policy version's signature with the configured key (``policy.verify_key``, the signing key,
    or the data dir's key file); None, with a warning, when there is none: versions are then enforced
    unchecked. A key that is set but unreadable stops the start (a ConfigError)."""
    if (settings.policy.verify_key is None and settings.policy.signing_key is None
            and not default_key_path(settings).exists()):
        log.warning("no policy key (policy.verify_key): policy versions are enforced without checking their "
                    "signatures")
        return None
    public = verify_key(settings)
    return lambda version: verify(public, version)


@contextlib.asynccontextmanager
async def enforcement(settings: Settings, pool: asyncpg.Pool, dsn: str, *,
                      clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                      alerted: Recipients | None = None,
                      supervisor: Supervisor | None = None) -> AsyncIterator[Enforcer]:
    """A started :class:`Enforcer` over a live :class:`BalanceView` (its refresh loop run by
    ``supervisor``, the runtime's in a service); stopped on exit."""
    prices = settings.pricing.table()
    cfg = settings.enforcement
    policy = Policy.from_settings(cfg)
    policy.check_prices(prices, bedrock_models=settings.bedrock.models.keys())
    view = BalanceView(pool, dsn=dsn, settings=cfg, policy=policy, clock=clock,
                       instance=f"{settings.instance}/{new_id()}", supervisor=supervisor,
                       verify=version_verifier(settings))
    await view.start()
    try:
        yield Enforcer(view, prices=prices, detector=RetryDetector(default_cap=cfg.retry_cap), clock=clock,
                       alerted=alerted or alert_recipients(settings), stale_s=view.stale_s,
                       on_outage=cfg.on_outage, outage_after_s=cfg.outage_after_s)
    finally:
        await view.stop()
