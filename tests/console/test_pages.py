"""The reading pages over a month folded by the real ledger: figures are the chargeback report's, CSV
exports are the rows shown, and each role reads only its own (guessed URLs included)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from spendgate.admin.cache import cache_report
from spendgate.admin.console.auth_chain import RESOLVERS
from spendgate.admin.console.identity import Identity, Role
from spendgate.admin.reports import chargeback
from spendgate.admin.sessions import session_detail
from spendgate.admin.window import Filters, Window
from spendgate.domain.events import UsageRecorded
from tests.support.admin_server import admin_client, auth
from tests.support.admin_traffic import PRICES
from tests.support.console_data import NOW, QUERY, seeded_console
from tests.support.postgres import PostgresForTests

NOVEMBER = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz="UTC", now=NOW)
MANAGER = Identity(subject="idp|mia", name="Mia", role=Role.MANAGER, teams=frozenset({"platform"}), via="test")
DEVELOPER = Identity(subject="idp|alice", name="Alice", role=Role.DEVELOPER, developer="alice", via="test")
NOBODY = Identity(subject="idp|new", name="New", role=Role.DEVELOPER, developer=None, via="test")
AS = {"manager": MANAGER, "developer": DEVELOPER, "nobody": NOBODY}


async def _as_header(request: web.Request) -> Identity | None:
    return AS.get(request.headers.get("X-Test-As", ""))


@pytest.fixture(scope="module")
async def seeded(postgres_server: PostgresForTests) -> AsyncIterator[tuple[asyncpg.Pool, list[UsageRecorded]]]:
    """One seeded database for the module: every test here only reads."""
    async with seeded_console(postgres_server) as found:
        yield found


@pytest.fixture
def pool(seeded: tuple[asyncpg.Pool, list[UsageRecorded]]) -> asyncpg.Pool:
    return seeded[0]


@pytest.fixture
def month(seeded: tuple[asyncpg.Pool, list[UsageRecorded]]) -> list[UsageRecorded]:
    return seeded[1]


@pytest.fixture
async def client(pool: asyncpg.Pool) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with admin_client(pool, now=NOW) as c:
        c.app[RESOLVERS].append(_as_header)
        yield c


def as_(role: str) -> dict[str, str]:
    return {"X-Test-As": role}


async def page(client: TestClient, path: str, headers: dict[str, str] | None = None,  # type: ignore[type-arg]
               status: int = 200) -> str:
    resp = await client.get(path, headers=headers if headers is not None else auth())
    text = await resp.text()
    assert resp.status == status, (path, text[-600:])
    return text


async def csv_rows(client: TestClient, path: str, headers: dict[str, str] | None = None  # type: ignore[type-arg]
                   ) -> list[dict[str, str]]:
    resp = await client.get(path, headers=headers if headers is not None else auth())
    assert resp.status == 200 and resp.content_type == "text/csv"
    return list(csv.DictReader(io.StringIO(await resp.text())))


def table_column(html: str, table_id: str, index: int) -> list[str]:
    """The raw values (``data-sort``) of one column of a table in the page."""
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1], re.S)
    return [re.findall(r'data-sort="([^"]*)"', r)[index] for r in rows]


def usd(text: str) -> int:
    return int(Decimal(text) * 1_000_000)


async def test_team_and_developer_pages_show_the_chargeback_figures(pool: asyncpg.Pool,
                                                                   client: TestClient) -> None:  # type: ignore[type-arg]
    """Team platform's cost, retry spend, downgrade savings and its developers' lines are the chargeback
    report's to the micro-dollar; the developer page's total is alice's chargeback line."""
    by_team = await chargeback(pool, PRICES, by="team", window=NOVEMBER)
    platform = next(ln for ln in by_team.lines if ln.group == "platform")
    html = await page(client, "/teams/platform" + QUERY)
    assert f'id="total-cost">{_fmt(platform.cost_micros)}<' in html
    assert f'id="retry-spend">{_fmt(platform.retry_cost_micros)}<' in html
    assert f'id="downgrade-savings">{_fmt(platform.downgrade_saved_micros)}<' in html
    devs = await chargeback(pool, PRICES, by="developer", window=NOVEMBER, filters=Filters(team="platform"))
    assert table_column(html, "developers", 0) == [ln.group for ln in devs.lines]
    assert table_column(html, "developers", 3) == [str(ln.cost_micros) for ln in devs.lines]
    assert table_column(html, "developers", 6) == [str(ln.downgrade_saved_micros) for ln in devs.lines]
    assert "Budgets and current stage" in html and 'data-chart="burndown"' in html

    alice = next(ln for ln in devs.lines if ln.group == "alice")
    html = await page(client, "/developers/alice" + QUERY)
    assert f'id="total-cost">{_fmt(alice.cost_micros)}<' in html
    sessions = set(table_column(html, "sessions", 0))
    assert sessions and all(s.endswith("-alice") for s in sessions)


def _fmt(micros: int) -> str:
    from spendgate.domain.money import format_usd
    return format_usd(micros)


async def test_list_csv_exports_are_the_chargeback_lines(pool: asyncpg.Pool,
                                                        client: TestClient) -> None:  # type: ignore[type-arg]
    """/teams and /developers as CSV: one row per chargeback line (cost and requests), exact decimal
    dollars, same order; read from the ledger's day balances in the default zone and from the events in
    another, the figures are the chargeback report's either way."""
    for tz in ("UTC", "America/New_York"):
        window = Window.of(date(2026, 11, 1), date(2026, 11, 30), tz=tz, now=NOW)
        for path, by in (("/teams", "team"), ("/developers", "developer")):
            report = await chargeback(pool, PRICES, by=by, window=window)
            rows = await csv_rows(client, f"{path}{QUERY}&tz={tz}&format=csv")
            got = [(r[by.capitalize()], usd(r["Cost (USD)"]), int(r["Requests"])) for r in rows]
            assert got == [(ln.group, ln.cost_micros, ln.requests) for ln in report.lines], (tz, by)
            assert sum(usd(r["Cost (USD)"]) for r in rows) == report.total.cost_micros  # type: ignore[union-attr]


async def test_the_csv_of_a_page_table_is_the_table_it_shows(client: TestClient) -> None:  # type: ignore[type-arg]
    """Every table of the team page, downloaded, has the page's rows in the page's order and values."""
    html = await page(client, "/teams/platform" + QUERY)
    for name, money_col in (("developers", "Cost (USD)"), ("repos", "Cost (USD)"), ("sessions", "Cost (USD)")):
        rows = await csv_rows(client, f"/teams/platform{QUERY}&format=csv&table={name}")
        assert [str(usd(r[money_col])) for r in rows] == table_column(html, name, 3 if name != "sessions" else 6)
        assert len(rows) > 0
    budgets = await csv_rows(client, f"/teams/platform{QUERY}&format=csv&table=budgets")
    assert [(r["Period"], r["Stage"]) for r in budgets] == [("month from 2026-11-01", "alert")]
    bad = await client.get("/teams/platform?format=csv&table=secrets", headers=auth())
    assert bad.status == 400 and "no table" in await bad.text()


async def test_overview_ranks_teams_by_risk_and_lists_todays_stage_changes(
        month: list[UsageRecorded], client: TestClient) -> None:  # type: ignore[type-arg]
    """The org's month to date is the sum of the events; payments (forecast at twice its budget) ranks first;
    today's stage changes hold platform's 80 % crossing and not payments' crossings of earlier days."""
    html = await page(client, "/")
    assert f'id="org-spent">{_fmt(sum(e.cost_micros for e in month))}<' in html
    assert table_column(html, "teams", 0)[:2] == ["payments", "platform"]
    assert table_column(html, "teams", 3)[:2] == ["pause", "alert"]
    changes = await csv_rows(client, "/?format=csv&table=changes")
    assert ("team:platform", "alert", "80") in {(r["Scope"], r["Stage"], r["Threshold %"]) for r in changes}
    assert all(not r["Scope"].startswith("team:payments") for r in changes)
    assert 'id="chart-data-org"' in html


async def test_session_drill_down_is_the_session_report(pool: asyncpg.Pool,
                                                       client: TestClient) -> None:  # type: ignore[type-arg]
    """A session's page: its cost, every turn and every request, as /v1/sessions/{id} reports them."""
    detail = await session_detail(pool, PRICES, "sess-today-bob", "bob")
    html = await page(client, "/sessions/sess-today-bob?developer=bob")
    assert f'id="session-cost">{_fmt(detail.line.cost_micros)}<' in html
    assert table_column(html, "turns", 0) == [t.turn_id for t in detail.turns]
    assert len(table_column(html, "requests", 0)) == sum(len(t.request_lines) for t in detail.turns)
    assert "gpt-5.1-codex" in html
    await page(client, "/sessions/no-such-session", status=404)


async def test_sessions_list_searches(client: TestClient) -> None:  # type: ignore[type-arg]
    """?q= finds sessions by developer, id or repo; a % in the search is a literal character, not a wildcard."""
    html = await page(client, "/sessions" + QUERY + "&q=carol")
    found = table_column(html, "sessions", 1)
    assert found and set(found) == {"carol"}
    assert table_column(await page(client, "/sessions" + QUERY + "&q=today"), "sessions", 0) == ["sess-today-bob"]
    assert 'id="sessions"' not in await page(client, "/sessions" + QUERY + "&q=%25")


async def test_cache_page_flags_the_sessions_the_cache_report_flags(pool: asyncpg.Pool,
                                                                   client: TestClient) -> None:  # type: ignore[type-arg]
    """The sessions under 30 % (5 requests or more), worst first, each with the money its misses cost: the
    same sessions and amounts as the cache report (/v1/reports/cache) of a period holding them whole; the
    per-session hit rates are the report's too (requests outside any session have no session line)."""
    flagged = await csv_rows(client, "/cache" + QUERY + "&format=csv&table=flagged")
    report = await cache_report(pool, by="session", window=NOVEMBER)
    rates = [Decimal(r["Hit rate (%)"]) for r in flagged]
    assert flagged and rates == sorted(rates) and all(r < 30 for r in rates)
    assert {(r["Session"], r["Developer"], usd(r["Money lost to misses (USD)"])) for r in flagged} == \
        {(ln.group, ln.developer, ln.miss_cost_micros) for ln in report.flagged_sessions}
    per_session = await csv_rows(client, "/cache" + QUERY + "&by=session&format=csv&table=hit-rates")
    assert {(r["Session"], r["Hit rate (%)"]) for r in per_session} == \
        {(ln.group, ln.hit_rate_pct or "") for ln in report.lines if ln.group is not None}


async def test_a_manager_reads_only_their_teams(client: TestClient) -> None:  # type: ignore[type-arg]
    """Mia manages platform: lists hold platform and its people only; other teams' pages, people and
    sessions answer 403, however the URL was guessed."""
    m = as_("manager")
    assert [r["Team"] for r in await csv_rows(client, "/teams" + QUERY + "&format=csv", m)] == ["platform"]
    assert {r["Developer"] for r in await csv_rows(client, "/developers" + QUERY + "&format=csv", m)} == \
        {"alice", "bob"}
    assert {r["Developer"] for r in await csv_rows(client, "/sessions" + QUERY + "&format=csv", m)} <= \
        {"alice", "bob"}
    overview = await page(client, "/", m)
    assert table_column(overview, "teams", 0) == ["platform"] and 'id="org-spent"' not in overview
    await page(client, "/teams/platform", m)
    await page(client, "/developers/bob", m)
    for path in ("/teams/payments", "/teams/payments?format=csv", "/developers/carol",
                 "/sessions/sess-001-carol?developer=carol"):
        assert "may not read" in await page(client, path, m, status=403)


async def test_a_developer_reads_only_themself(client: TestClient) -> None:  # type: ignore[type-arg]
    """Alice sees her own spend and sessions; teams, other people and their sessions are refused."""
    d = as_("developer")
    assert [r["Developer"] for r in await csv_rows(client, "/developers" + QUERY + "&format=csv", d)] == ["alice"]
    assert {r["Developer"] for r in await csv_rows(client, "/sessions" + QUERY + "&format=csv", d)} == {"alice"}
    assert {r["Developer"] for r in await csv_rows(client, "/cache" + QUERY + "&format=csv", d)} == {"alice"}
    await page(client, "/developers/alice", d)
    for path in ("/teams", "/teams/platform", "/developers/bob", "/sessions/sess-today-bob?developer=bob"):
        assert "may not read" in await page(client, path, d, status=403)
    assert "No usage" in await page(client, "/sessions/sess-today-bob", d, status=404)
    overview = await page(client, "/", d)
    assert 'id="teams"' not in overview and "team:payments" not in overview


async def test_a_developer_identity_without_a_developer_reads_nothing(
        client: TestClient) -> None:  # type: ignore[type-arg]
    """Signed in as a developer the IdP named no developer id for: every spend page is refused or empty."""
    n = as_("nobody")
    for path in ("/developers", "/cache", "/sessions/sess-today-bob", "/developers/bob"):
        assert "may not read" in await page(client, path, n, status=403)
    assert await csv_rows(client, "/sessions" + QUERY + "&format=csv", n) == []


@pytest.mark.parametrize(("path", "message"), [
    ("/teams?from=2026-13-01", "from must be a date"),
    ("/developers?from=2026-11-30&to=2026-11-01", "is before --from"),
    ("/sessions?tz=Mars/Olympus", "timezone"),
    ("/sessions?q=" + "x" * 300, "at most 256"),
    ("/teams/" + "p" * 300, "1 to 256"),
    ("/cache?by=planet", "by must be one of"),
])
async def test_hostile_or_mistaken_queries_get_a_400_page(
        client: TestClient, path: str, message: str) -> None:  # type: ignore[type-arg]
    """Bad dates, zones, oversized names and unknown choices: an HTML 400 that says what is wrong."""
    assert message in await page(client, path, status=400)
