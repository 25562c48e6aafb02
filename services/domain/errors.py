"""The error tree. Every error spendgate raises derives from :class:`SpendgateError`.

    SpendgateError (retriable=False)
    ├── ConfigError                 bad settings, pricing or routing rules: fail at start-up
    ├── UnknownModelError           a model with no price and no fallback
    ├── PoisonEventError            an event that can never be folded (malformed, unknown version)
    ├── BusError (retriable=True)   the bus could not publish or consume; try again
    │   └── BusUnavailableError     the broker is unreachable
    └── StoreError (retriable=True) the database could not be reached

Third-party errors are translated at the adapter boundary (``raise BusError(...) from exc``) so
callers decide on ``retriable`` instead of matching strings.
"""

from __future__ import annotations

import reprlib

MAX_MESSAGE_CHARS = 2_000
"""The longest message an error carries: errors are shown to callers and logged, and the values they
quote may be anyone's input (a 5 MB model name must not come back as a 5 MB answer)."""

_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlong = 2, 60, 60, 40


def shown(value: object) -> str:
    """``value`` as an error message quotes it: its ``repr``, cut short (bounded work and size even for a
    huge or deeply nested value)."""
    return _SHOWN.repr(value)


class SpendgateError(Exception):
    """Root of every spendgate error."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            message = f"{message[:MAX_MESSAGE_CHARS]}… ({len(message) - MAX_MESSAGE_CHARS:,} more characters)"
        super().__init__(message)
        self.message = message
        if retriable is not None:
            self.retriable = retriable


class ConfigError(SpendgateError):
    """Configuration that cannot work; raised at start-up, naming what is wrong and where."""


class UnknownModelError(SpendgateError):
    """A model missing from the pricing table with no fallback price configured."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no price in spendgate's pricing table; ask your admin to add it "
            "(pricing.models) or set pricing.fallback"
        )
        self.model = model


class PoisonEventError(SpendgateError):
    """An event that can never be processed; it goes to a dead-letter table, never a retry loop."""


class BusError(SpendgateError):
    """Publishing to or consuming from the bus failed."""

    retriable = True


class BusUnavailableError(BusError):
    """The broker cannot be reached right now."""


class StoreError(SpendgateError):
    """The database failed in a way worth retrying."""

    retriable = True
