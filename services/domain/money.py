"""Money is integer micro-dollars (1 USD = 1_000_000) everywhere; this module converts at the edges."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000

Micros = int


def usd_to_micros(amount: str | int | Decimal) -> Micros:
    """Parse a dollar amount given by a person ("12.50", 40, Decimal) into micro-dollars.

    Floats are refused on purpose: they cannot represent most cent values exactly.
    """
    if isinstance(amount, float):  # type: ignore[unreachable]
        raise TypeError("dollar amounts must be str, int or Decimal, never float")
    try:
        value = Decimal(str(amount).strip().lstrip("$"))
    except InvalidOperation as exc:
        raise ValueError(f"not a dollar amount: {amount!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a dollar amount: {amount!r}")
    return int((value * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_decimal(micros: Micros) -> Decimal:
    """Exact dollar value of an amount of micro-dollars."""
    return Decimal(micros) / MICROS_PER_USD


def format_usd(micros: Micros, *, places: int = 2) -> str:
    """Human format: ``$1,234.57`` (rounded half-up to ``places``), ``-$0.50`` for negatives."""
    sign = "-" if micros < 0 else ""
    quantum = Decimal(1).scaleb(-places)
    value = micros_to_decimal(abs(micros)).quantize(quantum, rounding=ROUND_HALF_UP)
    return f"{sign}${value:,.{places}f}"


def usd_str(micros: Micros) -> str:
    """Machine format for JSON: exact decimal dollars as a string, e.g. ``"0.012345"``."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"
