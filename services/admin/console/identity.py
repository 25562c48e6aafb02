"""Who is asking, and what they may see and change: one identity per admin request, and the rules.

Every admin request (console page or JSON API) carries an :class:`Identity`, set by the first identity
resolver that recognises the request (see :mod:`spendgate.admin.console.auth_chain`). The rules below are
the only place that says what a role may do; pages and API handlers ask them, never compare roles
themselves.

Roles (issue 14):

- ``admin``: everything;
- ``finops``: reads everything, changes budgets and policy;
- ``manager``: reads their teams, raises their teams' budgets within a limit, approves suggestions;
- ``developer``: reads their own spend and sessions only.

Pure: no aiohttp, no database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    FINOPS = "finops"
    MANAGER = "manager"
    DEVELOPER = "developer"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """A signed-in person or a named API token.

    ``subject`` is stable (the IdP's ``sub``, ``token:<name>`` or ``break-glass``) and is what the audit
    trail records; ``name`` is for display. ``teams`` are a manager's teams; ``developer`` is the
    developer id (as on virtual keys) whose spend a developer may read.
    """

    subject: str
    name: str
    role: Role
    teams: frozenset[str] = field(default_factory=frozenset)
    developer: str | None = None
    via: str = "token"

    @property
    def actor(self) -> str:
        """What the audit trail records for a change made by this identity."""
        return f"{self.via}:{self.subject}"

    @staticmethod
    def break_glass() -> Identity:
        """The identity of the single shared admin token (``SPENDGATE_ADMIN_TOKEN``)."""
        return Identity(subject="break-glass", name="break-glass admin token", role=Role.ADMIN, via="admin-token")


def reads_everything(who: Identity) -> bool:
    return who.role in (Role.ADMIN, Role.FINOPS)


def may_read_team(who: Identity, team: str) -> bool:
    return reads_everything(who) or (who.role is Role.MANAGER and team in who.teams)


def may_read_developer(who: Identity, developer: str, team: str | None) -> bool:
    """A developer's own spend; a manager's team members; everyone's for admin and FinOps."""
    if reads_everything(who):
        return True
    if who.role is Role.MANAGER:
        return team is not None and team in who.teams
    return who.role is Role.DEVELOPER and who.developer is not None and developer == who.developer


def may_set_budgets(who: Identity) -> bool:
    return who.role in (Role.ADMIN, Role.FINOPS)


def may_raise_team_budget(who: Identity, team: str) -> bool:
    """FinOps and admin raise any budget; a manager their own teams' (the amount limit is checked by the
    caller against the configured manager raise limit)."""
    return may_set_budgets(who) or (who.role is Role.MANAGER and team in who.teams)


def may_change_policy(who: Identity) -> bool:
    return who.role in (Role.ADMIN, Role.FINOPS)


def may_approve_suggestion(who: Identity, team: str | None) -> bool:
    return may_change_policy(who) or (who.role is Role.MANAGER and team is not None and team in who.teams)


def may_manage_keys(who: Identity) -> bool:
    return who.role is Role.ADMIN


def may_replay_alerts(who: Identity) -> bool:
    return who.role is Role.ADMIN


def may_read_audit(who: Identity) -> bool:
    return reads_everything(who)


def may_raise_budget(who: Identity, scope: str, amount_micros: int, manager_limit_micros: int | None) -> bool:
    """A raise of ``amount_micros`` on ``scope`` (a parsed scope, maybe per-model): FinOps and admin any;
    a manager only on one of their teams (``team:<name>``) and within the configured manager raise limit
    (none configured: managers may not raise)."""
    if may_set_budgets(who):
        return True
    kind, _, rest = scope.partition(":")
    team = rest.split("|", 1)[0]
    return (kind == "team" and may_raise_team_budget(who, team) and manager_limit_micros is not None
            and 0 < amount_micros <= manager_limit_micros)


def may_read_budgets(who: Identity) -> bool:
    """The budgets page: everything for admin and FinOps, their teams' for managers; not for developers."""
    return reads_everything(who) or who.role is Role.MANAGER


def may_read_alerts(who: Identity) -> bool:
    """The alerts page: every alert for admin and FinOps, their teams' for managers; not for developers."""
    return reads_everything(who) or who.role is Role.MANAGER


def may_manage_tokens(who: Identity) -> bool:
    return who.role is Role.ADMIN


def may_set_rate_limits(who: Identity) -> bool:
    return who.role in (Role.ADMIN, Role.FINOPS)


def may_read_scope(who: Identity, scope: str) -> bool:
    """A budget or alert scope (``team:platform``, ``developer:alice``, ``org``, ``key:…``, optionally
    ``|model:…``): a manager reads their teams', a developer their own developer scope."""
    if reads_everything(who):
        return True
    kind, _, rest = scope.partition(":")
    name = rest.split("|", 1)[0]
    if kind == "team":
        return may_read_team(who, name)
    if kind == "developer":
        return who.role is Role.DEVELOPER and who.developer is not None and name == who.developer
    return False


STRENGTH: tuple[Role, ...] = (Role.ADMIN, Role.FINOPS, Role.MANAGER, Role.DEVELOPER)
"""Strongest first: a person whose claims map to several roles gets the first of these."""


def strongest(roles: set[Role]) -> Role | None:
    return next((r for r in STRENGTH if r in roles), None)
