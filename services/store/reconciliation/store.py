"""The reconciliation tables: the compared lines of each provider and day (a rerun replaces them), the
gaps (once per provider and day, an outbox to spendgate.budget.v1) and the nightly run's daily claim.

Publishing reads the unpublished gaps under ``FOR UPDATE SKIP LOCKED``, publishes them and marks them,
so a crash between the two only repeats a publish (the alerter dedupes on the gap), never loses one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from spendgate.core.bus import Bus
from spendgate.core.db import Conn, Queryable
from spendgate.domain import constants as c
from spendgate.domain.events import ReconciliationGap, encode, new_id
from spendgate.domain.reconcile import DayGap, Line, Usage

SOURCE = "spendgate/reconcile"
PUBLISH_BATCH = 500


async def save_lines(conn: Conn, provider: str, start: date, end: date, lines: Sequence[Line],
                     at: datetime) -> None:
    """Replace ``provider``'s lines of the days ``start``..``end`` with ``lines``, in one transaction."""
    rows = [(line.provider, line.day, line.model, line.upstream or "", line.ledger.requests,
             line.ledger.input_tokens, line.ledger.output_tokens, line.ledger.cost_micros or 0,
             line.billed.requests, line.billed.input_tokens, line.billed.output_tokens, line.billed.cost_micros, at)
            for line in lines]
    async with conn.transaction():
        await conn.execute("DELETE FROM reconciliation_lines WHERE provider = $1 AND day BETWEEN $2 AND $3",
                           provider, start, end)
        await conn.executemany(
            """INSERT INTO reconciliation_lines (provider, day, model, upstream, ledger_requests,
                   ledger_input_tokens, ledger_output_tokens, ledger_cost_micros, provider_requests,
                   provider_input_tokens, provider_output_tokens, provider_cost_micros, reconciled_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""", rows)


async def record_gaps(db: Queryable, gaps: Sequence[DayGap], at: datetime) -> list[DayGap]:
    """Record each gap unless its provider and day already have one; returns the new ones."""
    fresh = []
    for gap in gaps:
        inserted = await db.fetchval(
            """INSERT INTO reconciliation_gaps (provider, day, gap_id, ledger_micros, provider_micros,
                   capture_ppm, models, detected_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (provider, day) DO NOTHING RETURNING gap_id""",
            gap.provider, gap.day, new_id(), gap.ledger_micros, gap.provider_micros, gap.capture_ppm,
            list(gap.models), at)
        if inserted is not None:
            fresh.append(gap)
    return fresh


def _event(r: asyncpg.Record) -> ReconciliationGap:
    return ReconciliationGap(
        gap_id=str(r["gap_id"]), provider=r["provider"], day=r["day"], ledger_micros=r["ledger_micros"],
        provider_micros=r["provider_micros"], gap_micros=r["provider_micros"] - r["ledger_micros"],
        capture_ppm=r["capture_ppm"], models=list(r["models"]), detected_at=r["detected_at"])


async def publish_pending(pool: asyncpg.Pool, bus: Bus) -> int:
    """Publish every unpublished gap on spendgate.budget.v1; returns how many."""
    sent = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT * FROM reconciliation_gaps WHERE published_at IS NULL ORDER BY detected_at
                    LIMIT {PUBLISH_BATCH} FOR UPDATE SKIP LOCKED""")
            if not rows:
                return sent
            await bus.publish_many(c.TOPIC_BUDGET, [(f"reconciliation:{r['provider']}",
                                                     encode(_event(r), source=SOURCE, subject=r["provider"]))
                                                    for r in rows])
            await conn.execute("UPDATE reconciliation_gaps SET published_at = now() WHERE gap_id = ANY($1::uuid[])",
                               [r["gap_id"] for r in rows])
            sent += len(rows)


@dataclass(frozen=True, slots=True)
class StoredLine:
    line: Line
    reconciled_at: datetime


async def stored_lines(db: Queryable, start: date, end: date, provider: str | None = None) -> list[StoredLine]:
    """The lines of the days ``start``..``end`` (of ``provider`` alone, if given), by provider, day, model."""
    rows = await db.fetch(
        """SELECT * FROM reconciliation_lines
           WHERE day BETWEEN $1 AND $2 AND ($3::text IS NULL OR provider = $3)
           ORDER BY provider, day, model, upstream""", start, end, provider)
    out = []
    for r in rows:
        upstream = r["upstream"] or None
        ledger = Usage(r["day"], r["model"], upstream, r["ledger_requests"], r["ledger_input_tokens"],
                       r["ledger_output_tokens"], r["ledger_cost_micros"])
        billed = Usage(r["day"], r["model"], upstream, r["provider_requests"], r["provider_input_tokens"],
                       r["provider_output_tokens"], r["provider_cost_micros"])
        out.append(StoredLine(Line(r["provider"], r["day"], r["model"], upstream, ledger, billed), r["reconciled_at"]))
    return out


async def gap_days(db: Queryable, start: date, end: date) -> list[tuple[str, date, bool]]:
    """(provider, day, published) of the recorded gaps in ``start``..``end``."""
    rows = await db.fetch("""SELECT provider, day, published_at IS NOT NULL FROM reconciliation_gaps
                             WHERE day BETWEEN $1 AND $2 ORDER BY day, provider""", start, end)
    return [(r[0], r[1], r[2]) for r in rows]


async def claim_run(db: Queryable, run_date: date, claimed_at: datetime) -> bool:
    """Take the nightly run of ``run_date``; False when another worker already has (or finished it)."""
    claimed = await db.fetchval(
        """INSERT INTO reconciliation_runs (run_date, claimed_at) VALUES ($1, $2)
           ON CONFLICT (run_date) DO NOTHING RETURNING run_date""", run_date, claimed_at)
    return claimed is not None


async def release_run(db: Queryable, run_date: date) -> None:
    """Give the claim back (the run failed), so the next attempt can take it."""
    await db.execute("DELETE FROM reconciliation_runs WHERE run_date = $1 AND finished_at IS NULL", run_date)


async def finish_run(db: Queryable, run_date: date, at: datetime) -> None:
    await db.execute("UPDATE reconciliation_runs SET finished_at = $2 WHERE run_date = $1", run_date, at)
