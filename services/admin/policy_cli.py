"""``spendgate policy dry-run | apply | show``: try a budget policy on past traffic, then ship it."""

from __future__ import annotations

import contextlib
import getpass
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import click
import yaml

from spendgate.admin import render
from spendgate.admin.client import ApiSource
from spendgate.admin.dryrun import DryRun, dry_run
from spendgate.admin.policy import Applied, apply, live_policy, to_document
from spendgate.core.clitools import Ctx, pass_ctx, run
from spendgate.core.config import Settings
from spendgate.domain.enforcement import load_policy
from spendgate.domain.errors import ConfigError
from spendgate.domain.money import format_usd
from spendgate.runtime import open_database

api_option = click.option("--api", "api_url", envvar="SPENDGATE_ADMIN_URL", default=None,
                          help="Go through a running admin API instead of the database.")


@contextlib.asynccontextmanager
async def _api(settings: Settings, api_url: str) -> AsyncIterator[ApiSource]:
    if settings.admin_token is None:
        raise ConfigError("--api needs the admin token: set SPENDGATE_ADMIN_TOKEN")
    async with aiohttp.ClientSession() as http:
        yield ApiSource(http, api_url, settings.admin_token.get_secret_value())


def _read_document(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise click.BadParameter(f"{path} must be a mapping with budgets:, raises:, …")
    return doc


@click.group()
def policy() -> None:
    """Budget policies: dry-run a proposal on past traffic, apply it, show the live one."""


@policy.command("dry-run")
@click.argument("proposal", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
@api_option
@pass_ctx
def dry_run_cmd(ctx: Ctx, proposal: Path, days: int, as_json: bool, api_url: str | None) -> None:
    """Replay the last DAYS of usage through PROPOSAL (same format as the live policy) and report."""
    settings = ctx.settings

    async def go() -> DryRun:
        if api_url:
            async with _api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/dry-run", DryRun,
                                      body={"proposal": _read_document(proposal), "days": days})
        policy_ = load_policy(proposal, settings.enforcement)
        async with open_database(settings) as (_, pool):
            result, _ = await dry_run(pool, policy_, settings.pricing.table(), days=days, now=datetime.now(UTC))
            return result

    result = run(go())
    click.echo(render.to_json(result) if as_json else describe(result))


@policy.command("apply")
@click.argument("proposal", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@api_option
@pass_ctx
def apply_cmd(ctx: Ctx, proposal: Path, api_url: str | None) -> None:
    """Make the live budgets and raises exactly those of PROPOSAL (the file a dry-run used)."""
    settings = ctx.settings

    async def go() -> Applied:
        if api_url:
            async with _api(settings, api_url) as api:
                return await api.call("POST", "/v1/policy/apply", Applied,
                                      body={"proposal": _read_document(proposal)})
        policy_ = load_policy(proposal, settings.enforcement)
        async with open_database(settings) as (_, pool):
            return await apply(pool, policy_, settings.enforcement, now=datetime.now(UTC),
                               actor=f"cli:{getpass.getuser()}")

    done = run(go())
    for label, items in (("set", done.set_budgets), ("deleted", done.deleted_budgets),
                         ("unchanged", done.unchanged_budgets), ("raise added", done.added_raises),
                         ("raise kept (runs out by itself)", done.kept_raises)):
        for item in items:
            click.echo(f"{label}: {item}")
    for diff in done.settings_differences:
        click.echo(f"not applied, lives in spendgate.yaml (enforcement): {diff}", err=True)


@policy.command("show")
@pass_ctx
def show_cmd(ctx: Ctx) -> None:
    """Print the live policy in the proposal format (edit it, dry-run it, apply it)."""
    settings = ctx.settings

    async def go() -> dict[str, Any]:
        async with open_database(settings) as (_, pool):
            return to_document(await live_policy(pool, settings.enforcement, datetime.now(UTC)))

    click.echo(yaml.safe_dump(run(go()), sort_keys=False), nl=False)


def describe(r: DryRun) -> str:
    out = [
        f"Replayed {r.events} requests from {r.from_at:%Y-%m-%d %H:%M} to {r.to_at:%Y-%m-%d %H:%M} UTC "
        f"({r.days} days) in {r.elapsed_ms / 1000:.1f} s",
        f"spend under the proposal {format_usd(r.spend_micros)} vs actual {format_usd(r.actual_micros)}",
        f"downgrades {r.downgrades} (saved {format_usd(r.downgrade_saved_micros)}), forced cheapest "
        f"{r.forced_cheapest}, refused {r.refused_requests} in {r.paused_sessions} paused sessions, "
        f"retry refusals {r.retry_refused}; {r.differences} requests treated differently than live",
    ]
    for s in r.scopes:
        out += ["", f"{s.scope}: spend {format_usd(s.spend_micros)} vs actual {format_usd(s.actual_micros)}; "
                    f"downgrades {s.downgrades} saving {format_usd(s.downgrade_saved_micros)}; "
                    f"forced cheapest {s.forced_cheapest} saving {format_usd(s.forced_cheapest_saved_micros)}; "
                    f"refused {s.refused_requests}"]
        for a in s.alerts:
            out.append(f"  alert {a.threshold_pct}% ({a.stage}) of the {a.period} budget from {a.period_start} "
                       f"at {a.at:%Y-%m-%d %H:%M}: {format_usd(a.spent_micros)} of {format_usd(a.budget_micros)}")
        for p in s.paused_sessions:
            resumed = f", resumed {p.resumed_at:%Y-%m-%d %H:%M}" if p.resumed_at else ""
            out.append(f"  paused session {p.session_id} ({p.developer}) at {p.paused_at:%Y-%m-%d %H:%M} after "
                       f"{p.turns_before} turns / {p.requests_before} requests; cut {p.refused_requests} "
                       f"requests, {p.remaining_turns} more turns, {format_usd(p.remaining_cost_micros)}{resumed}")
    return "\n".join(out)
