"""Money is integer micro-dollars (1 USD = 1_000_000) everywhere; this module converts at the edges."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, DecimalException

from spendgate.domain.errors import shown

MICROS_PER_USD = 1_000_000
MAX_USD = 10**12
"""The largest amount a person may write ($1 trillion): its micro-dollars fit a signed 64-bit integer
(the ledger's ``bigint``) with room to add many of them."""
MAX_AMOUNT_CHARS = 40

Micros = int


def usd_to_micros(amount: str | int | Decimal) -> Micros:
    """Parse a dollar amount given by a person ("12.50", 40, Decimal) into micro-dollars.

    Floats are refused on purpose: they cannot represent most cent values exactly. Anything else that
    is not an amount (text that is not a number, NaN, infinity, more than :data:`MAX_USD` either way,
    text longer than :data:`MAX_AMOUNT_CHARS`) is a :class:`ValueError` quoting the input cut short:
    amounts come from policy documents, the API and the command line.
    """
    if isinstance(amount, float):  # type: ignore[unreachable]
        raise TypeError("dollar amounts must be str, int or Decimal, never float")
    if isinstance(amount, int) and abs(amount) > MAX_USD:
        raise ValueError(f"more than ${MAX_USD:,}: {shown(amount)}")
    text = str(amount).strip()
    try:
        value = Decimal(text.removeprefix("$")) if len(text) <= MAX_AMOUNT_CHARS else None
    except DecimalException:
        value = None
    if value is None or not value.is_finite():
        raise ValueError(f"not a dollar amount: {shown(amount)}")
    if value.copy_abs() > MAX_USD:  # copy_abs: abs() would round in the context and overflow
        raise ValueError(f"more than ${MAX_USD:,}: {shown(amount)}")
    return int((value * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def micros_to_decimal(micros: Micros) -> Decimal:
    """Exact dollar value of an amount of micro-dollars."""
    return Decimal(micros) / MICROS_PER_USD


CENT_MICROS = 10_000


def format_usd(micros: Micros, *, places: int | None = None) -> str:
    """The one human format for money (CLI tables, alerts, 429 messages, reports).

    A cent or more: cents, ``$1,234.57``, ``-$0.50``. Under a cent: two significant digits, so a
    small amount never reads as ``$0.00`` (``$0.004``, ``$0.0012``, ``$0.000001``); zero is
    ``$0.00``. ``places`` forces a fixed number of decimals instead (e.g. 6 for per-request costs).
    Rounding is half-up, on the exact integer amount.
    """
    sign = "-" if micros < 0 else ""
    size = abs(micros)
    trim = places is None and 0 < size < CENT_MICROS
    if places is None:
        places = 2 if not trim else min(6, 6 - len(str(size)) + 2)
    value = micros_to_decimal(size).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    text = f"{value:,.{places}f}"
    if trim:  # under a cent: drop the padding zeros (a value rounded up to a cent keeps "0.01")
        text = text.rstrip("0")
    return f"{sign}${text}"


def usd_str(micros: Micros) -> str:
    """Machine format for JSON: exact decimal dollars as a string, e.g. ``"0.012345"``."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"
