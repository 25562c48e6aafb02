"""Identifiers: UUIDv7 (time-ordered) for every event and record spendgate produces."""

from __future__ import annotations

import uuid_utils


def uuid7() -> str:
    """A new UUIDv7 as its canonical string."""
    return str(uuid_utils.uuid7())
