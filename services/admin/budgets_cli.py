"""``spendgate budgets …``: set, list, show, raise and delete budgets (every change audited and
announced to the proxies, which apply it within a second)."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime
from typing import Any

import click

from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.domain.enforcement.policy import Budget, BudgetRaise, Policy, Thresholds, budget_of
from spendgate.domain.enforcement.scopes import parse_scope
from spendgate.domain.enforcement.stages import stage_for
from spendgate.domain.errors import ConfigError
from spendgate.domain.money import format_usd, usd_str, usd_to_micros
from spendgate.domain.periods import PeriodKind, period_containing
from spendgate.runtime import open_database
from spendgate.store.balances.store import balances_of
from spendgate.store.budgets import store


def _usd(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return usd_to_micros(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from exc


def _thresholds(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(p) for p in value.split(",")]
    except ValueError as exc:
        raise click.BadParameter("give three whole percentages, e.g. 80,95,110", param_hint="--thresholds") from exc


def _budget_json(b: Budget) -> dict[str, Any]:
    return {"scope": b.scope, "daily": None if b.daily_micros is None else usd_str(b.daily_micros),
            "monthly": None if b.monthly_micros is None else usd_str(b.monthly_micros), "timezone": b.timezone,
            "thresholds": b.thresholds.as_list(), "at_pause": b.at_pause, "retry_cap": b.retry_cap}


def _money(micros: int | None) -> str:
    return "-" if micros is None else format_usd(micros)


@click.group()
def budgets() -> None:
    """Dollar budgets per key, developer, team or the org, per day and month."""


@budgets.command("set")
@click.option("--scope", required=True, help="key:<id>, developer:<name>, team:<name> or org")
@click.option("--daily", help="Daily budget in USD, e.g. 40")
@click.option("--monthly", help="Monthly budget in USD, e.g. 800")
@click.option("--timezone", help="IANA timezone of the scope's days and months (default UTC)")
@click.option("--thresholds", help="alert,downgrade,pause percentages (default 80,95,110)")
@click.option("--at-pause", type=click.Choice(["refuse", "cheapest"]), help="What happens at the pause stage")
@click.option("--retry-cap", type=int, help="Retries of the same failing tool call before a session is stopped")
@click.option("--actor", default=getpass.getuser, show_default="current user", help="Recorded in the audit trail")
@pass_ctx
def set_(ctx: Ctx, scope: str, daily: str | None, monthly: str | None, timezone: str | None,
         thresholds: str | None, at_pause: str | None, retry_cap: int | None, actor: str) -> None:
    """Create a budget, or change the given fields of an existing one."""

    async def main() -> None:
        async with open_database(ctx.settings) as (_url, pool):
            old = await store.get_budget(pool, scope)
            base = old or Budget(parse_scope(scope), timezone=ctx.settings.default_timezone,
                                 thresholds=Thresholds.of(ctx.settings.enforcement.thresholds_pct))
            b = budget_of(
                base.scope,
                daily_micros=_usd(daily, "--daily") if daily is not None else base.daily_micros,
                monthly_micros=_usd(monthly, "--monthly") if monthly is not None else base.monthly_micros,
                timezone=timezone or base.timezone,
                thresholds=_thresholds(thresholds) or base.thresholds.as_list(),
                at_pause=at_pause or base.at_pause,
                retry_cap=retry_cap if retry_cap is not None else base.retry_cap,
            )
            await store.set_budget(pool, b, actor=actor)
            click.echo(f"budget for {b.scope}: daily {_money(b.daily_micros)}, monthly {_money(b.monthly_micros)}"
                       f" ({b.timezone}, thresholds {b.thresholds.as_list()}, at pause: {b.at_pause})")

    run(main())


@budgets.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
@pass_ctx
def list_(ctx: Ctx, as_json: bool) -> None:
    """Every budget with its active raises."""

    async def main() -> None:
        async with open_database(ctx.settings) as (_url, pool):
            rows, raises = await store.load_budgets(pool, datetime.now(UTC))
        if as_json:
            click.echo(json.dumps([_budget_json(b) for b in rows], indent=2))
            return
        click.echo(f"{'scope':<28} {'daily':>12} {'monthly':>12}  {'timezone':<18} {'thresholds':<12} at pause")
        for b in rows:
            extra = sum(r.amount_micros for r in raises if r.scope == b.scope)
            note = f"  (+{format_usd(extra)} raise)" if extra else ""
            click.echo(f"{b.scope:<28} {_money(b.daily_micros):>12} {_money(b.monthly_micros):>12}  "
                       f"{b.timezone:<18} {','.join(map(str, b.thresholds.as_list())):<12} {b.at_pause}{note}")

    run(main())


@budgets.command("show")
@click.option("--scope", required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output")
@pass_ctx
def show(ctx: Ctx, scope: str, as_json: bool) -> None:
    """A budget, its active raises and where this day's and month's spend stands."""

    async def main() -> None:
        now = datetime.now(UTC)
        async with open_database(ctx.settings) as (_url, pool):
            b = await store.get_budget(pool, scope)
            if b is None:
                raise ConfigError(f"no budget for {parse_scope(scope)}")
            _, raises = await store.load_budgets(pool, now)
            periods = {k: period_containing(k, now, b.timezone) for k in PeriodKind}
            rows = await balances_of(pool, b.scope, day_start=periods[PeriodKind.DAY].start,
                                     month_start=periods[PeriodKind.MONTH].start)
        policy = Policy(budgets={b.scope: b}, raises=tuple(raises))
        spent = {r.period: r.spent_micros for r in rows}
        out: dict[str, Any] = {**_budget_json(b), "raises": [], "periods": []}
        for r in (r for r in raises if r.scope == b.scope):
            out["raises"].append({"by": usd_str(r.amount_micros), "until": r.until.isoformat(), "reason": r.reason})
        for kind, period in periods.items():
            limit = policy.effective_micros(b, kind, now)
            if limit is not None:
                s = spent.get(kind.value, 0)
                out["periods"].append({"period": kind.value, "start": period.start.isoformat(),
                                       "spent": usd_str(s), "budget": usd_str(limit),
                                       "stage": stage_for(s, limit, b.thresholds).label,
                                       "resets_at": period.ends_at.isoformat()})
        if as_json:
            click.echo(json.dumps(out, indent=2))
            return
        click.echo(f"{b.scope}  ({b.timezone}, thresholds {b.thresholds.as_list()}, at pause: {b.at_pause}, "
                   f"retry cap: {b.retry_cap if b.retry_cap is not None else 'default'})")
        for p in out["periods"]:
            click.echo(f"  {p['period']:<6} {p['start']}  spent ${p['spent']} of ${p['budget']}  stage {p['stage']}"
                       f"  resets {p['resets_at']}")
        for r in out["raises"]:
            click.echo(f"  raise +${r['by']} until {r['until']}: {r['reason']}")

    run(main())


@budgets.command("raise")
@click.option("--scope", required=True)
@click.option("--by", "by", required=True, help="USD added to the scope's budgets while the raise lasts")
@click.option("--until", "until", required=True, help="When the raise ends, e.g. 2026-12-01T00:00Z")
@click.option("--reason", required=True)
@click.option("--actor", default=getpass.getuser, show_default="current user")
@pass_ctx
def raise_(ctx: Ctx, scope: str, by: str, until: str, reason: str, actor: str) -> None:
    """Raise a scope's budgets temporarily; the raise expires by itself."""
    try:
        ends = datetime.fromisoformat(until)
    except ValueError as exc:
        raise click.BadParameter("use ISO 8601, e.g. 2026-12-01T00:00Z", param_hint="--until") from exc
    if ends.tzinfo is None:
        raise click.BadParameter("give a timezone, e.g. 2026-12-01T00:00Z", param_hint="--until")
    amount = _usd(by, "--by")
    assert amount is not None

    async def main() -> None:
        async with open_database(ctx.settings) as (_url, pool):
            await store.raise_budget(pool, BudgetRaise(parse_scope(scope), amount, ends, reason), actor=actor)
        click.echo(f"raised {parse_scope(scope)} by {format_usd(amount)} until {ends.isoformat()}")

    run(main())


@budgets.command("delete")
@click.option("--scope", required=True)
@click.option("--actor", default=getpass.getuser, show_default="current user")
@pass_ctx
def delete(ctx: Ctx, scope: str, actor: str) -> None:
    """Remove a scope's budget (and its raises)."""

    async def main() -> None:
        async with open_database(ctx.settings) as (_url, pool):
            found = await store.delete_budget(pool, scope, actor=actor)
        click.echo(f"deleted the budget of {parse_scope(scope)}" if found else f"no budget for {parse_scope(scope)}")

    run(main())


COMMANDS: list[click.Command] = [budgets]
