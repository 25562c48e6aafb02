"""One reconciliation run over a range of UTC days: each configured provider's reports beside the ledger's
daily lines, compared, stored (a rerun replaces the days' lines), and gaps recorded once per provider and day."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import aiohttp
import asyncpg

from spendgate.core.config import Settings
from spendgate.core.config_providers import ReconcileProvider
from spendgate.domain.errors import ConfigError
from spendgate.domain.reconcile import DayGap, Line, Threshold, Usage, compare, day_gaps, provider_kind
from spendgate.reconcile.providers import provider_usage
from spendgate.store.reconciliation import store
from spendgate.store.usage.reads import daily_model_usage


@dataclass(frozen=True, slots=True)
class Outcome:
    start: date
    end: date
    lines: list[Line]
    gaps: list[DayGap]
    """Every (provider, day) over the threshold in this run."""
    new_gaps: list[DayGap]
    """Those recorded for the first time (each raises one alert)."""


async def ledger_usage(pool: asyncpg.Pool, start: date, end: date) -> dict[str, list[Usage]]:
    """The ledger's lines per provider kind (``openai``, ``anthropic``)."""
    out: dict[str, list[Usage]] = {}
    for row in await daily_model_usage(pool, start, end):
        out.setdefault(provider_kind(row.endpoint), []).append(
            Usage(row.day, row.model, row.upstream, row.requests, row.input_tokens, row.output_tokens,
                  row.cost_micros))
    return out


def ledger_side(provider: ReconcileProvider, ours: Sequence[Usage], *, shared: bool) -> tuple[list[Usage], bool]:
    """The ledger's lines this provider's bill covers, and whether to compare them per upstream.

    Per upstream once the provider's key ids are mapped and the ledger's lines name their upstream. A kind
    with several providers (``shared``; each maps its keys) splits the ledger by the upstreams each maps.
    """
    upstreams = set(provider.api_key_ids.values())
    named = any(u.upstream is not None for u in ours)
    by_upstream = bool(upstreams) and named
    if shared and ours and not named:
        raise ConfigError(f"several {provider.kind} providers, but usage events do not name the upstream that "
                          "served them: the ledger cannot be split between the accounts (one provider per kind)")
    if shared:
        return [u for u in ours if u.upstream in upstreams], by_upstream
    return list(ours), by_upstream


async def reconcile(pool: asyncpg.Pool, settings: Settings, start: date, end: date, *, now: datetime,
                    providers: Sequence[ReconcileProvider] | None = None) -> Outcome:
    """Compare, store and record gaps for ``start``..``end`` (inclusive UTC days), provider by provider.

    A provider whose report fails raises (``ProviderError``) before anything of it is stored; providers
    done before it keep their stored lines.
    """
    cfg = settings.reconcile
    chosen = list(cfg.providers if providers is None else providers)
    threshold = Threshold(cfg.gap_pct, cfg.gap_min_micros)
    ours = await ledger_usage(pool, start, end)
    lines: list[Line] = []
    gaps: list[DayGap] = []
    fresh: list[DayGap] = []
    async with aiohttp.ClientSession() as session:
        for provider in chosen:
            billed = await provider_usage(session, provider, cfg, start, end)
            shared = sum(p.kind == provider.kind for p in cfg.providers) > 1
            mine, by_upstream = ledger_side(provider, ours.get(provider.kind, []), shared=shared)
            found = compare(provider.name, mine, billed, by_upstream=by_upstream)
            over = day_gaps(found, threshold)
            async with pool.acquire() as conn, conn.transaction():
                await store.save_lines(conn, provider.name, start, end, found, now)
                new = await store.record_gaps(conn, over, now)
            lines += found
            gaps += over
            fresh += new
    return Outcome(start, end, lines, gaps, fresh)
