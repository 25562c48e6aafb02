"""The budget domain, pure: no I/O, no clock, no environment.

Money (integer micro-dollars), prices, periods in IANA time zones, the event types, the error tree,
and the budget rules that enforcement, the ledger fold, the dry-run replay and the forecaster all
call: effective budgets, the scopes of a request, balance keys, stages, threshold crossings and the
cascade step. An import contract (pyproject) holds this whole package free of I/O libraries and of
every other spendgate package.
"""
