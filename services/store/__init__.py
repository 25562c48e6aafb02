"""The table owners: one package per table family, its store module beside the migrations that create it.

| family | package | tables |
|---|---|---|
| usage events and sessions | ``store.usage`` | usage_events, sessions, session_turns |
| balances and crossings | ``store.balances`` | balances, threshold_crossings, enforcement_pending |
| budgets, raises and audit | ``store.budgets`` | budgets, budget_raises, budget_audit |
| keys | ``store.keys`` | virtual_keys |
| forecasts | ``store.forecasts`` | forecasts, forecast_overruns, forecast_reports |
| alerts | ``store.alerts`` | alerts, alert_* |
| dead letters | ``store.deadletters`` | dead_letters |
| bus log and positions | ``core.bus`` (the Postgres bus adapter) | bus_*, consumer_positions |

Every other module reads and writes these tables through the owner's functions; a test fails when SQL
names a table outside its owner. ``store.migrations`` is alembic's machinery and the root revision.
"""
