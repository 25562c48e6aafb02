"""Alembic revisions of the reconciliation family."""
