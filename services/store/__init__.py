"""The table owners: one package per table family, its store module beside the migrations that create it.

Family (owner folder under ``services/``): tables; other families' tables it also reads.

- usage events and sessions (``store/usage``): usage_events, sessions, session_turns.
- balances and crossings (``store/balances``): balances, threshold_crossings, enforcement_pending,
  enforcement_unsettled.
- budgets, raises and audit (``store/budgets``): budgets, budget_raises, budget_audit.
- keys (``store/keys``): virtual_keys; also reads usage_events and balances (the team directory).
- forecasts (``store/forecasts``): forecasts, forecast_overruns, forecast_reports.
- alerts (``store/alerts``): alerts, alert_jobs, alert_deliveries, alert_dead_letters,
  alert_digest_items, alert_digest_state, alert_incidents, alert_forecasts.
- dead letters (``store/deadletters``): dead_letters.
- reconciliation (``store/reconciliation``): reconciliation_lines, reconciliation_gaps, reconciliation_runs.
- rate limits (``store/ratelimits``): rate_limits, rate_limit_counts.
- policy versions (``store/policies``): policy_versions.
- access (``store/access``): console_sessions, login_attempts, api_tokens, audit_log; also reads
  budget_audit (the audit trail reads both in one query).
- turn outcomes (``store/outcomes``): turn_evals; also reads usage_events (a turn's outcome is its
  events added up, beside its external evaluation).
- bus log and positions (``core/bus``: the Postgres bus adapter and ``positions.py``): bus_partitions,
  bus_log, bus_group_offsets, consumer_positions.

The rule, held by ``tests/unit/test_table_ownership.py`` (it scans the SQL in every module under
``services/`` and names file and line of each breach):

- Only the owner's folder (its store module and its migrations) names its tables in SQL. Every other
  area calls the owner's typed functions, which take the caller's connection, so a batch that writes
  several families (the ledger's fold) still commits as one transaction.
- A query that reads several families lives in the store of the family it mainly reads, and that
  family declares the other tables in ``also_reads``; reads only (FROM/JOIN), never writes. Where two
  separate queries are as clear, they are split instead, each in its owner (the digest's team spend
  reads keys, budgets and balances through three owners). One declaration today: the team directory
  (``keys.team_directory``) unions keys with this month's usage and adds the team's month balance.
- Rules are not SQL: "base budget plus active raises" is
  :func:`spendgate.domain.enforcement.policy.effective_budget_micros`, applied by the ledger, the proxy's
  policy and the forecaster (``as_of=True``: raises created after the time asked do not count) to the
  budgets and raises the budgets store returns as domain types.
- Store functions take a :data:`~spendgate.core.db.Conn` (the caller's transaction: the ledger writes
  several families in one) or a :data:`~spendgate.core.db.Queryable` (a connection or the pool); a few
  that run their own transaction take the pool. Results are typed (dataclasses, NamedTuples, domain
  types), never records or dicts.

Each family has a port, ``<family>/port.py``: a ``typing.Protocol`` listing the store's functions. Its
PostgreSQL implementation is the ``<family>/store.py`` module itself, pinned to the port there
(``POSTGRES: UsageStore = store``) so mypy checks that they agree; the bus positions' port is
``core.bus.PositionStore`` (``core.bus.POSITIONS``). One abstract suite per port,
``tests/contract/test_<family>_store_contract.py``, runs against each implementation.

``store.migrations`` is alembic's machinery and the root revision; its version locations come from
:data:`FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Family:
    """A table family: the folder (relative to ``services/``) that owns its tables, and what else it reads."""

    name: str
    folder: str
    tables: tuple[str, ...]
    also_reads: tuple[str, ...] = ()


FAMILIES: tuple[Family, ...] = (
    Family("usage", "store/usage", ("usage_events", "sessions", "session_turns")),
    Family("balances", "store/balances", ("balances", "threshold_crossings", "enforcement_pending",
                                          "enforcement_unsettled")),
    Family("budgets", "store/budgets", ("budgets", "budget_raises", "budget_audit")),
    Family("keys", "store/keys", ("virtual_keys",), also_reads=("usage_events", "balances")),
    Family("forecasts", "store/forecasts", ("forecasts", "forecast_overruns", "forecast_reports")),
    Family("alerts", "store/alerts", ("alerts", "alert_jobs", "alert_deliveries", "alert_dead_letters",
                                      "alert_digest_items", "alert_digest_state", "alert_incidents",
                                      "alert_forecasts")),
    Family("deadletters", "store/deadletters", ("dead_letters",)),
    Family("reconciliation", "store/reconciliation", ("reconciliation_lines", "reconciliation_gaps",
                                                      "reconciliation_runs")),
    Family("ratelimits", "store/ratelimits", ("rate_limits", "rate_limit_counts")),
    Family("policies", "store/policies", ("policy_versions", "policy_rollbacks")),
    Family("access", "store/access", ("console_sessions", "login_attempts", "api_tokens", "audit_log"),
           also_reads=("budget_audit",)),
    Family("bus", "core/bus", ("bus_partitions", "bus_log", "bus_group_offsets", "consumer_positions")),
    Family("outcomes", "store/outcomes", ("turn_evals",), also_reads=("usage_events",)),
)
"""Every table and its one owner: the single declared mapping (migrations, the ownership check)."""

OWNER_OF: dict[str, Family] = {table: f for f in FAMILIES for table in f.tables}
