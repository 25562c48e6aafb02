"""The reconciliation family: compared lines, gaps (an outbox to spendgate.budget.v1) and nightly runs."""
