"""Balances per scope and period, the threshold-crossings outbox, and the proxies' pending spend.

The ledger adds increments and writes crossings inside its batch transaction (every write takes the
caller's connection). ``balances.version`` comes from a sequence on every change, which is how the
proxies' balance views poll. ``enforcement_pending`` holds each proxy's reserved + unsettled spend per
balance, shared with its peers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol, TypeVar

import asyncpg

from spendgate.core.db import Queryable
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.enforcement.scopes import parse_scope
from spendgate.domain.events import CrossingCause, Stage, ThresholdCrossed, UsageRecorded
from spendgate.domain.ids import uuid7
from spendgate.domain.periods import PeriodKind

# -- what the ledger hands in (its fold's types satisfy these) -----------------------------------------


class BalanceRef(Protocol):
    """One balance: a scope, a period kind and the period's local start date."""

    @property
    def scope(self) -> str: ...

    @property
    def period(self) -> PeriodKind: ...

    @property
    def period_start(self) -> date: ...


class BalanceIncrement(Protocol):
    @property
    def spent_micros(self) -> int: ...

    @property
    def requests(self) -> int: ...


class CrossingFound(Protocol):
    """A threshold a balance crossed, with the usage event that carried it across."""

    @property
    def key(self) -> BalanceRef: ...

    @property
    def threshold_pct(self) -> int: ...

    @property
    def stage(self) -> Stage: ...

    @property
    def spent_micros(self) -> int: ...

    @property
    def budget_micros(self) -> int: ...

    @property
    def resets_at(self) -> datetime: ...

    @property
    def trigger(self) -> UsageRecorded: ...


K = TypeVar("K", bound=BalanceRef)

# -- what comes out ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceRow:
    scope: str
    period: str
    period_start: date
    spent_micros: int
    requests: int


@dataclass(frozen=True, slots=True)
class VersionedBalance:
    key: BalanceKey
    spent_micros: int
    version: int


@dataclass(frozen=True, slots=True)
class DaySpend:
    scope: str
    day: date
    spent_micros: int


# -- balances ------------------------------------------------------------------------------------------


async def apply_balances(conn: Queryable, deltas: Mapping[K, BalanceIncrement]) -> dict[K, int]:
    """Add the increments; returns each balance's total before them."""
    if not deltas:
        return {}
    keys = sorted(deltas, key=lambda k: (k.scope, k.period.value, k.period_start))  # one lock order across ledgers
    by_row = {(k.scope, k.period.value, k.period_start): k for k in keys}
    rows = await conn.fetch(
        """INSERT INTO balances AS b (scope, period, period_start, spent_micros, requests)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::int8[], $5::int8[])
           ON CONFLICT (scope, period, period_start) DO UPDATE
             SET spent_micros = b.spent_micros + excluded.spent_micros,
                 requests = b.requests + excluded.requests,
                 version = nextval('balances_version'), updated_at = now()
           RETURNING scope, period, period_start, spent_micros""",
        [k.scope for k in keys], [k.period.value for k in keys], [k.period_start for k in keys],
        [deltas[k].spent_micros for k in keys], [deltas[k].requests for k in keys],
    )
    before: dict[K, int] = {}
    for r in rows:
        key = by_row[(r["scope"], r["period"], r["period_start"])]
        before[key] = r["spent_micros"] - deltas[key].spent_micros
    return before


FOLD_LOCK = 0x5B41A7CE
"""Advisory lock between folds (shared) and recounts of a balance from the events (exclusive)."""


async def hold_fold_lock(conn: Queryable, *, exclusive: bool) -> None:
    """Hold :data:`FOLD_LOCK` until the caller's transaction ends. Each fold holds it shared from before it
    reads the budgets; a recount (:func:`set_balances`) holds it exclusive, so it waits for the folds in
    flight to commit (their events are then in its sums) and the next ones read the budgets it recounted
    for, adding their events on top of its totals."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)" if exclusive else "SELECT pg_advisory_xact_lock_shared($1)",
                       FOLD_LOCK)


async def set_balances(conn: Queryable, totals: Mapping[BalanceKey, tuple[int, int]]) -> None:
    """Make each balance ``(spent_micros, requests)``, counted afresh from the events (a per-model or weekly
    budget that has just been set); under :func:`hold_fold_lock` exclusive."""
    keys = sorted(totals, key=lambda k: (k.scope, k.period.value, k.period_start))
    await conn.execute(
        """INSERT INTO balances AS b (scope, period, period_start, spent_micros, requests)
           SELECT * FROM unnest($1::text[], $2::text[], $3::date[], $4::int8[], $5::int8[])
           ON CONFLICT (scope, period, period_start) DO UPDATE
             SET spent_micros = excluded.spent_micros, requests = excluded.requests,
                 version = nextval('balances_version'), updated_at = now()
           WHERE (b.spent_micros, b.requests) IS DISTINCT FROM (excluded.spent_micros, excluded.requests)""",
        [k.scope for k in keys], [k.period.value for k in keys], [k.period_start for k in keys],
        [totals[k][0] for k in keys], [totals[k][1] for k in keys],
    )


async def clear_balances(conn: Queryable) -> None:
    """Empty every balance (``ledger rebuild``, inside its transaction, before folding every event again)."""
    await conn.execute("TRUNCATE balances")


async def balances_of(db: Queryable, scope: str, *, day_start: date, month_start: date,
                      week_start: date | None = None) -> list[BalanceRow]:
    """The balances of ``scope`` for the day, the week (when ``week_start`` is given) and the month starting
    on the given local dates."""
    rows = await db.fetch(
        """SELECT scope, period, period_start, spent_micros, requests FROM balances
           WHERE scope = $1 AND ((period = 'day' AND period_start = $2) OR (period = 'month' AND period_start = $3)
                                 OR (period = 'week' AND period_start = $4))""",
        parse_scope(scope), day_start, month_start, week_start,
    )
    return [BalanceRow(r["scope"], r["period"], r["period_start"], r["spent_micros"], r["requests"]) for r in rows]


async def balances_since(db: Queryable, scopes: Sequence[str], since: date) -> list[BalanceRow]:
    """Every balance of ``scopes`` (as stored: parsed) whose period starts on or after ``since``, in one
    query: the console's budgets page reads thousands of scopes' current periods this way."""
    rows = await db.fetch(
        """SELECT scope, period, period_start, spent_micros, requests FROM balances
           WHERE scope = ANY($1::text[]) AND period_start >= $2""",
        list(scopes), since,
    )
    return [BalanceRow(r["scope"], r["period"], r["period_start"], r["spent_micros"], r["requests"]) for r in rows]


async def spent_micros(db: Queryable, scope: str, period: PeriodKind, start: date) -> int:
    """One balance's spend (0 when nothing was spent in it)."""
    spent = await db.fetchval(
        "SELECT spent_micros FROM balances WHERE scope = $1 AND period = $2 AND period_start = $3",
        scope, period.value, start,
    )
    return int(spent or 0)


async def changed_balances(db: Queryable, since_version: int, *, day_cutoff: date,
                           month_cutoff: date) -> list[VersionedBalance]:
    """Balances changed after ``since_version`` whose period starts on or after the cutoffs (a week's: on
    or after the week before the day cutoff), oldest change first."""
    rows = await db.fetch(
        """SELECT scope, period, period_start, spent_micros, version FROM balances
           WHERE version > $1
             AND ((period = 'day' AND period_start >= $2) OR (period = 'month' AND period_start >= $3)
                  OR (period = 'week' AND period_start >= $2 - 7))
           ORDER BY version""",
        since_version, day_cutoff, month_cutoff,
    )
    return [VersionedBalance(BalanceKey(r["scope"], PeriodKind(r["period"]), r["period_start"]), r["spent_micros"],
                             r["version"]) for r in rows]


async def day_spend(db: Queryable, scopes: Sequence[str], start: date, end: date) -> list[DaySpend]:
    """The day balances of ``scopes`` whose local day is between ``start`` and ``end`` (inclusive)."""
    rows = await db.fetch(
        """SELECT scope, period_start, spent_micros FROM balances
           WHERE period = 'day' AND scope = ANY($1::text[]) AND period_start BETWEEN $2 AND $3""",
        list(scopes), start, end,
    )
    return [DaySpend(r["scope"], r["period_start"], int(r["spent_micros"])) for r in rows]


async def period_balances(db: Queryable, scope_prefix: str, period: PeriodKind, start: date) -> dict[str, int]:
    """What every scope whose name starts with ``scope_prefix`` (``team:``) spent in the period starting
    ``start``, by scope (scopes with no balance row are absent)."""
    rows = await db.fetch(
        """SELECT scope, spent_micros FROM balances
           WHERE period = $1 AND period_start = $2 AND starts_with(scope, $3)""",
        period.value, start, scope_prefix,
    )
    return {r["scope"]: int(r["spent_micros"]) for r in rows}


async def day_totals(db: Queryable, scope_prefix: str, start: date, end: date) -> list[tuple[str, int, int]]:
    """(scope, spent, requests) summed over the day balances ``start`` … ``end`` (inclusive) of every scope
    whose name starts with ``scope_prefix``, costliest first."""
    rows = await db.fetch(
        """SELECT scope, sum(spent_micros)::bigint AS spent, sum(requests)::bigint AS n FROM balances
           WHERE period = 'day' AND period_start BETWEEN $1 AND $2 AND starts_with(scope, $3)
           GROUP BY scope ORDER BY spent DESC, scope""",
        start, end, scope_prefix,
    )
    return [(r["scope"], int(r["spent"]), int(r["n"])) for r in rows]


async def scopes_with_day_spend(db: Queryable, since: date, *, kinds: Sequence[str]) -> list[str]:
    """The scopes of these kinds (``developer``, ``team``, …; not per-model ones) with a day balance since
    ``since``."""
    rows = await db.fetch(
        """SELECT DISTINCT scope FROM balances
           WHERE period = 'day' AND period_start >= $1 AND split_part(scope, ':', 1) = ANY($2::text[])
             AND strpos(scope, '|') = 0 ORDER BY scope""",
        since, list(kinds),
    )
    return [r["scope"] for r in rows]


# -- threshold crossings (the outbox to spendgate.budget.v1) -------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossingRow:
    """One row of the crossings outbox, whatever found it: the fold (a usage event carried the balance
    across) or a budget change (the budget was lowered below the balance)."""

    key: BalanceKey
    threshold_pct: int
    stage: Stage
    spent_micros: int
    budget_micros: int
    resets_at: datetime
    crossed_at: datetime
    trigger_id: str
    """The usage event's id (cause ``usage``) or the budget change's id (cause ``budget_change``)."""
    cause: CrossingCause = "usage"
    developer: str | None = None
    team: str | None = None
    cost_center: str | None = None


async def insert_crossings(conn: Queryable, found: Sequence[CrossingFound]) -> int:
    """Write the fold's crossings to the outbox (see :func:`insert_crossing_rows`)."""
    return await insert_crossing_rows(conn, [
        CrossingRow(BalanceKey(c.key.scope, c.key.period, c.key.period_start), c.threshold_pct, c.stage,
                    c.spent_micros, c.budget_micros, c.resets_at, c.trigger.occurred_at, c.trigger.event_id,
                    developer=_developer(c), team=c.trigger.team, cost_center=c.trigger.cost_center)
        for c in found
    ])


async def insert_crossing_rows(conn: Queryable, rows: Sequence[CrossingRow]) -> int:
    """Write crossings to the outbox, once per (scope, period, start, threshold); returns how many are new."""
    if not rows:
        return 0
    inserted = await conn.fetch(
        """INSERT INTO threshold_crossings (crossing_id, scope, period, period_start, threshold_pct, stage,
               spent_micros, budget_micros, resets_at, crossed_at, developer, team, cost_center,
               trigger_event_id, cause)
           SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::date[], $5::int4[], $6::text[],
               $7::int8[], $8::int8[], $9::timestamptz[], $10::timestamptz[], $11::text[], $12::text[],
               $13::text[], $14::uuid[], $15::text[])
           ON CONFLICT (scope, period, period_start, threshold_pct) DO NOTHING RETURNING crossing_id""",
        [uuid7() for _ in rows], [r.key.scope for r in rows], [r.key.period.value for r in rows],
        [r.key.period_start for r in rows], [r.threshold_pct for r in rows], [r.stage for r in rows],
        [r.spent_micros for r in rows], [r.budget_micros for r in rows], [r.resets_at for r in rows],
        [r.crossed_at for r in rows], [r.developer for r in rows], [r.team for r in rows],
        [r.cost_center for r in rows], [r.trigger_id for r in rows], [r.cause for r in rows],
    )
    return len(inserted)


def _developer(c: CrossingFound) -> str | None:
    """The developer is named only on scopes that belong to one developer."""
    if c.key.scope.startswith(("key:", "developer:")):
        return c.trigger.developer
    return None


def _crossed(r: asyncpg.Record) -> ThresholdCrossed:
    return ThresholdCrossed(
        crossing_id=str(r["crossing_id"]), scope=r["scope"], period=r["period"], period_start=r["period_start"],
        resets_at=r["resets_at"], threshold_pct=r["threshold_pct"], stage=r["stage"],
        spent_micros=r["spent_micros"], budget_micros=r["budget_micros"], crossed_at=r["crossed_at"],
        developer=r["developer"], team=r["team"], cost_center=r["cost_center"],
        trigger_event_id=str(r["trigger_event_id"]), cause=r["cause"],
    )


async def unpublished_crossings(db: Queryable, limit: int) -> list[ThresholdCrossed]:
    """Up to ``limit`` crossings not yet published, in the order they happened."""
    rows = await db.fetch(
        """SELECT * FROM threshold_crossings WHERE published_at IS NULL
           ORDER BY crossed_at, crossing_id LIMIT $1""",
        limit,
    )
    return [_crossed(r) for r in rows]


async def mark_crossings_published(db: Queryable, crossing_ids: Sequence[str]) -> None:
    await db.execute(
        "UPDATE threshold_crossings SET published_at = now() WHERE crossing_id = ANY($1::uuid[])", list(crossing_ids),
    )


# -- pending spend shared between proxies --------------------------------------------------------------


async def peer_pending(db: Queryable, instance: str, *, stale_after_s: float) -> list[tuple[BalanceKey, int]]:
    """Every other proxy's pending sum per balance, from proxies heard from within ``stale_after_s``."""
    rows = await db.fetch(
        """SELECT scope, period, period_start, sum(pending_micros)::bigint AS pending FROM enforcement_pending
           WHERE instance <> $1 AND updated_at > now() - make_interval(secs => $2)
           GROUP BY scope, period, period_start""",
        instance, stale_after_s,
    )
    return [(BalanceKey(r["scope"], PeriodKind(r["period"]), r["period_start"]), r["pending"]) for r in rows]


async def peer_unsettled(db: Queryable, instance: str, *,
                         stale_after_s: float) -> list[tuple[str, list[BalanceKey], int]]:
    """The unsettled events every other live proxy lists behind its pending sums: ``(event_id, balance
    keys, cost)``. Read in the same snapshot as the balances, those the ledger has already folded are
    subtracted from the sums (``proxy.peers``)."""
    rows = await db.fetch(
        """SELECT event_id::text, keys, cost_micros FROM enforcement_unsettled u
           WHERE instance <> $1 AND EXISTS (SELECT 1 FROM enforcement_pending p WHERE p.instance = u.instance
                                            AND p.updated_at > now() - make_interval(secs => $2))""",
        instance, stale_after_s,
    )
    return [(r["event_id"], [_key_of(k) for k in json.loads(r["keys"])], int(r["cost_micros"])) for r in rows]


def _key_of(listed: list[str]) -> BalanceKey:
    """A balance key as :func:`put_unsettled` lists it: ``[scope, period, period_start]``."""
    return BalanceKey(listed[0], PeriodKind(listed[1]), date.fromisoformat(listed[2]))


async def lock_balances(conn: Queryable, keys: Sequence[BalanceKey]) -> None:
    """Take each balance's confirmation lock for this session, in a fixed order (no deadlock between
    proxies); :func:`unlock_balances` releases them. Session locks, not transaction ones, so that the
    caller's repeatable-read snapshot is taken after they are held."""
    ordered = _ordered(keys)
    await conn.execute(
        """SELECT pg_advisory_lock(h) FROM
             (SELECT hashtextextended(s || '/' || p || '/' || d::text, 7) AS h, ord
              FROM unnest($1::text[], $2::text[], $3::date[]) WITH ORDINALITY AS k(s, p, d, ord)
              ORDER BY ord) AS locks""",
        [k.scope for k in ordered], [k.period.value for k in ordered], [k.period_start for k in ordered],
    )


async def unlock_balances(conn: Queryable, keys: Sequence[BalanceKey]) -> None:
    ordered = _ordered(keys)
    await conn.execute(
        """SELECT pg_advisory_unlock(hashtextextended(s || '/' || p || '/' || d::text, 7))
           FROM unnest($1::text[], $2::text[], $3::date[]) AS k(s, p, d)""",
        [k.scope for k in ordered], [k.period.value for k in ordered], [k.period_start for k in ordered],
    )


async def balances_and_peers(conn: Queryable, instance: str, keys: Sequence[BalanceKey], *,
                             stale_after_s: float) -> list[tuple[BalanceKey, int, int, int]]:
    """Each balance's settled spend, its version and every other live proxy's pending sum on it:
    ``(key, spent, version, peers_pending)``, read under :func:`lock_balances` by a proxy confirming an
    admission near a pause line (``proxy.view``), so it sees every reservation confirmed before it."""
    ordered = _ordered(keys)
    rows = await conn.fetch(
        """SELECT k.s AS scope, k.p AS period, k.d AS period_start,
                  coalesce(b.spent_micros, 0) AS spent, coalesce(b.version, 0) AS version,
                  coalesce((SELECT sum(e.pending_micros) FROM enforcement_pending e
                            WHERE e.instance <> $4 AND e.updated_at > now() - make_interval(secs => $5)
                              AND e.scope = k.s AND e.period = k.p AND e.period_start = k.d), 0)::bigint AS peers
           FROM unnest($1::text[], $2::text[], $3::date[]) AS k(s, p, d)
           LEFT JOIN balances b ON b.scope = k.s AND b.period = k.p AND b.period_start = k.d""",
        [k.scope for k in ordered], [k.period.value for k in ordered], [k.period_start for k in ordered],
        instance, stale_after_s,
    )
    return [(BalanceKey(r["scope"], PeriodKind(r["period"]), r["period_start"]), int(r["spent"]), int(r["version"]),
             int(r["peers"])) for r in rows]


def _ordered(keys: Sequence[BalanceKey]) -> list[BalanceKey]:
    return sorted(set(keys), key=lambda k: (k.scope, k.period.value, k.period_start))


async def put_pending(conn: Queryable, instance: str, sums: Sequence[tuple[BalanceKey, int]]) -> None:
    """Set this proxy's pending sums for these balances (and its heartbeat on them)."""
    await conn.execute(
        """INSERT INTO enforcement_pending (instance, scope, period, period_start, pending_micros)
           SELECT $1, * FROM unnest($2::text[], $3::text[], $4::date[], $5::int8[])
           ON CONFLICT (instance, scope, period, period_start)
           DO UPDATE SET pending_micros = excluded.pending_micros, updated_at = now()""",
        instance, [k.scope for k, _ in sums], [k.period.value for k, _ in sums],
        [k.period_start for k, _ in sums], [v for _, v in sums],
    )


async def drop_pending(conn: Queryable, instance: str, keys: Sequence[BalanceKey]) -> None:
    """Remove this proxy's pending sums for these balances (they went to zero)."""
    await conn.execute(
        """DELETE FROM enforcement_pending WHERE instance = $1 AND (scope, period, period_start) IN
           (SELECT * FROM unnest($2::text[], $3::text[], $4::date[]))""",
        instance, [k.scope for k in keys], [k.period.value for k in keys], [k.period_start for k in keys],
    )


async def put_unsettled(conn: Queryable, instance: str,
                        events: Sequence[tuple[str, Sequence[BalanceKey], int]]) -> None:
    """List this proxy's unsettled events ``(event_id, balance keys, cost)`` behind its pending sums
    (write them in the transaction that publishes those sums)."""
    await conn.execute(
        """INSERT INTO enforcement_unsettled (instance, event_id, keys, cost_micros)
           SELECT $1, * FROM unnest($2::uuid[], $3::jsonb[], $4::int8[]) ON CONFLICT DO NOTHING""",
        instance, [e for e, _, _ in events],
        [json.dumps([[k.scope, k.period.value, k.period_start.isoformat()] for k in keys]) for _, keys, _ in events],
        [c for _, _, c in events],
    )


async def drop_unsettled(conn: Queryable, instance: str, event_ids: Sequence[str]) -> None:
    """Remove these events from this proxy's list (folded, or forgotten with their period)."""
    await conn.execute("DELETE FROM enforcement_unsettled WHERE instance = $1 AND event_id = ANY($2::uuid[])",
                       instance, list(event_ids))


async def publish_pending(conn: Queryable, instance: str, *, live: Sequence[tuple[BalanceKey, int]],
                          gone: Sequence[BalanceKey], listed: Sequence[tuple[str, Sequence[BalanceKey], int]],
                          unlisted: Sequence[str], notify: str | None) -> None:
    """:func:`put_pending` ``live``, :func:`drop_pending` ``gone``, :func:`put_unsettled` ``listed``,
    :func:`drop_unsettled` ``unlisted`` and, given a channel, ``pg_notify(notify, instance)``: all in one
    statement, so one round trip and one transaction. The proxy publishes each reservation with it while
    its event loop is busiest (a burst of requests); as six statements in a transaction it took six trips
    through that loop, 100-250 ms under load, and the peers decided blind to the burst meanwhile."""
    await conn.execute(
        """WITH put AS (
             INSERT INTO enforcement_pending (instance, scope, period, period_start, pending_micros)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::date[], $5::int8[])
             ON CONFLICT (instance, scope, period, period_start)
             DO UPDATE SET pending_micros = excluded.pending_micros, updated_at = now() RETURNING 1),
           gone AS (
             DELETE FROM enforcement_pending WHERE instance = $1 AND (scope, period, period_start) IN
             (SELECT * FROM unnest($6::text[], $7::text[], $8::date[])) RETURNING 1),
           listed AS (
             INSERT INTO enforcement_unsettled (instance, event_id, keys, cost_micros)
             SELECT $1, * FROM unnest($9::uuid[], $10::jsonb[], $11::int8[]) ON CONFLICT DO NOTHING RETURNING 1),
           unlisted AS (
             DELETE FROM enforcement_unsettled WHERE instance = $1 AND event_id = ANY($12::uuid[]) RETURNING 1)
           SELECT pg_notify($13::text, $1) WHERE $13::text IS NOT NULL""",
        instance, [k.scope for k, _ in live], [k.period.value for k, _ in live], [k.period_start for k, _ in live],
        [v for _, v in live], [k.scope for k in gone], [k.period.value for k in gone], [k.period_start for k in gone],
        [e for e, _, _ in listed],
        [json.dumps([[k.scope, k.period.value, k.period_start.isoformat()] for k in keys]) for _, keys, _ in listed],
        [c for _, _, c in listed], list(unlisted), notify,
    )


async def touch_pending(conn: Queryable, instance: str) -> None:
    """Heartbeat: this proxy's rows are live now."""
    await conn.execute("UPDATE enforcement_pending SET updated_at = now() WHERE instance = $1", instance)


async def sweep_pending(conn: Queryable, *, older_than_s: float) -> None:
    """Delete every proxy's rows not heart-beaten for ``older_than_s`` (proxies that went away)."""
    await conn.execute(
        "DELETE FROM enforcement_pending WHERE updated_at < now() - make_interval(secs => $1)", older_than_s,
    )
    await conn.execute("""DELETE FROM enforcement_unsettled u
                          WHERE NOT EXISTS (SELECT 1 FROM enforcement_pending p WHERE p.instance = u.instance)""")


async def withdraw_pending(db: Queryable, instance: str) -> None:
    """Remove every row of this proxy (on a clean stop)."""
    await db.execute("DELETE FROM enforcement_pending WHERE instance = $1", instance)
    await db.execute("DELETE FROM enforcement_unsettled WHERE instance = $1", instance)


@dataclass(frozen=True, slots=True)
class StageChange:
    """A crossing as the console lists it: a scope entered a stage at a time."""

    scope: str
    period: str
    period_start: date
    threshold_pct: int
    stage: str
    spent_micros: int
    budget_micros: int
    crossed_at: datetime
    developer: str | None
    team: str | None


async def crossings_between(db: Queryable, start: datetime, end: datetime, *, limit: int) -> list[StageChange]:
    """The threshold crossings recorded in ``[start, end)``, newest first, at most ``limit``."""
    rows = await db.fetch(
        """SELECT scope, period, period_start, threshold_pct, stage, spent_micros, budget_micros, crossed_at,
                  developer, team
           FROM threshold_crossings WHERE crossed_at >= $1 AND crossed_at < $2
           ORDER BY crossed_at DESC, scope LIMIT $3""", start, end, limit)
    return [StageChange(*r) for r in rows]
