"""Links from alert messages into the console: the page of the alert's scope, for the alert's period.
Pure: no I/O."""

from __future__ import annotations

from datetime import date
from urllib.parse import quote, urlencode

from spendgate.domain.enforcement.scopes import split_scope


def console_link(base_url: str, scope: str, *, developer: str | None, first_day: date, last_day: date,
                 timezone: str) -> str:
    """The console page for ``scope`` (a team's, a developer's or key owner's, else the overview) showing
    ``first_day`` … ``last_day`` in ``timezone``."""
    kind, _, name = split_scope(scope)[0].partition(":")
    if kind == "team":
        path = f"/teams/{quote(name, safe='')}"
    elif kind == "developer" or (kind == "key" and developer):
        path = f"/developers/{quote(name if kind == 'developer' else developer or '', safe='')}"
    else:
        path = "/"
    query = {"from": first_day.isoformat(), "to": last_day.isoformat(), "tz": timezone}
    return f"{base_url}{path}?{urlencode(query)}"
