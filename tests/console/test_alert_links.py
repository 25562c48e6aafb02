"""Alert messages link to the console page of their scope and period when ``console_links.public_url`` is
set: the ledger's real crossing becomes a message whose link opens that team's page for that month."""

from __future__ import annotations

from datetime import date
from urllib.parse import urlsplit

import asyncpg
import pytest

from spendgate.alerter.digest import render
from spendgate.alerter.links import console_link
from spendgate.alerter.messages import build_message
from spendgate.core.alert_routes import Route
from spendgate.core.config import load_settings
from spendgate.domain.alerts import alert_from_event
from spendgate.domain.errors import ConfigError
from spendgate.store.balances.store import unpublished_crossings
from tests.support.admin_server import admin_client, auth
from tests.support.console_data import NOW, seed_console

BASE = "https://spend.example.com"


def test_each_scope_links_to_its_own_page_for_the_period() -> None:
    """Teams and developers get their pages, a key its developer's, the org and cost centers the overview;
    names are quoted so a hostile name cannot change the path."""
    def link(scope: str, developer: str | None = None) -> str:
        return console_link(BASE, scope, developer=developer, first_day=date(2026, 11, 1),
                            last_day=date(2026, 11, 30), timezone="Europe/Paris")

    assert link("team:platform") == \
        f"{BASE}/teams/platform?from=2026-11-01&to=2026-11-30&tz=Europe%2FParis"
    assert link("key:vk_1", "alice").startswith(f"{BASE}/developers/alice?")
    assert link("team:a/../b|model:gpt-5.1").startswith(
        f"{BASE}/teams/a%2F..%2Fb?")
    assert urlsplit(link("org")).path == "/"
    assert urlsplit(link("cost_center:CC-1")).path == "/"


@pytest.mark.parametrize("bad", ["ftp://spend.example.com", "javascript:alert(1)", "spend.example.com",
                                 "https://spend.example.com/?x=1"])
def test_a_public_url_that_cannot_be_a_link_is_refused(bad: str) -> None:
    """Only an absolute http(s) address without query or fragment is accepted, with a clear error."""
    with pytest.raises(ConfigError, match=r"console_links\.public_url"):
        load_settings(console_links={"public_url": bad})
    assert load_settings(console_links={"public_url": BASE + "/"}).console_links.public_url == BASE


async def test_a_crossing_message_links_to_the_team_page_of_its_month(pool: asyncpg.Pool) -> None:
    """The ledger's crossing of team platform's monthly budget becomes a message whose Console fact opens
    /teams/platform for November; that page answers with the team's figures for that month. Without the
    setting the message has no link; the digest links to the overview."""
    await seed_console(pool)
    crossing = next(c for c in await unpublished_crossings(pool, 100) if c.scope == "team:platform")
    alert = alert_from_event(crossing)
    assert alert is not None
    async with pool.acquire() as conn:
        message = await build_message(conn, alert, now=NOW, top_n=3, small_turn_tokens=10_000,
                                      default_timezone="UTC", console_url=BASE)
        plain = await build_message(conn, alert, now=NOW, top_n=3, small_turn_tokens=10_000, default_timezone="UTC")
    link = next(f.value for f in message.facts if f.label == "Console")
    assert link == f"{BASE}/teams/platform?from=2026-11-01&to=2026-11-30&tz=UTC"
    assert all(f.label != "Console" for f in plain.facts)
    target = urlsplit(link)
    async with admin_client(pool, now=NOW) as client:
        resp = await client.get(f"{target.path}?{target.query}", headers=auth())
        assert resp.status == 200
        html = await resp.text()
        assert "Team platform" in html and 'value="2026-11-01"' in html and 'value="2026-11-30"' in html
    digest = render(Route(name="finops", match={}, notify=(), digest=None, line=1), [message], [], since=NOW,
                    until=NOW, now=NOW, console_url=BASE)
    assert next(f.value for f in digest.facts if f.label == "Console") == f"{BASE}/"
