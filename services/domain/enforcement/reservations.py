"""The reservation book: a proxy's in-flight and not-yet-folded spend per balance. Pure: no I/O.

Before a request is forwarded its estimated cost is *reserved* against every budgeted balance it
lands in; when it completes the reservation is *settled*: replaced by the real cost, which stays
*unsettled* until the ledger has folded the request's usage event into ``balances`` (the view then
calls :meth:`ReservationBook.folded`). A reservation whose request never completes is released after
``timeout_s``. Spend seen by the decision is ``settled (from the ledger) + unsettled + reserved``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from spendgate.domain.enforcement.balances import BalanceKey


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: int
    keys: tuple[BalanceKey, ...]
    amount_micros: int
    expires_at: float
    """Monotonic seconds after which the reservation is released if still open."""


class ReservationBook:
    """Reserved and unsettled micro-dollars per balance, kept as running sums (O(1) reads)."""

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self._clock = clock
        self._ids = itertools.count(1)
        self._open: dict[int, Reservation] = {}
        self._reserved: dict[BalanceKey, int] = {}
        self._unsettled: dict[BalanceKey, int] = {}
        self._events: dict[str, tuple[tuple[BalanceKey, ...], int]] = {}
        self._dirty: set[BalanceKey] = set()
        self._recent: dict[BalanceKey, int] = {}
        """Reserved per balance since the last :meth:`take_recent` (the view: since it last read its peers)."""
        self.expired_total = 0
        self.on_change: Callable[[], None] | None = None
        """Called when a balance's pending sum changes after the last :meth:`take_changed`."""

    def reserve(self, keys: Iterable[BalanceKey], amount_micros: int) -> Reservation:
        """Hold ``amount_micros`` against every balance in ``keys`` until settled, released or expired."""
        if amount_micros < 0:
            raise ValueError("a reservation cannot be negative")
        res = Reservation(next(self._ids), tuple(keys), amount_micros, self._clock() + self.timeout_s)
        self._open[res.reservation_id] = res
        self._add(self._reserved, res.keys, amount_micros)
        _bump(self._recent, res.keys, amount_micros)
        return res

    def settle(self, reservation: Reservation, *, event_id: str, cost_micros: int) -> None:
        """Replace the reservation by the request's real cost, unsettled until ``event_id`` is folded.

        Settling an expired reservation still records the cost: it was really spent.
        """
        self.release(reservation)
        if cost_micros > 0 and event_id not in self._events:
            self._events[event_id] = (reservation.keys, cost_micros)
            self._add(self._unsettled, reservation.keys, cost_micros)

    def release(self, reservation: Reservation) -> None:
        """Drop a reservation without cost (refused, or failed before the provider charged anything)."""
        if self._open.pop(reservation.reservation_id, None) is not None:
            self._add(self._reserved, reservation.keys, -reservation.amount_micros)

    def folded(self, event_ids: Iterable[str]) -> None:
        """The ledger has folded these events: their cost is now in the settled balances."""
        for event_id in event_ids:
            entry = self._events.pop(event_id, None)
            if entry is not None:
                self._add(self._unsettled, entry[0], -entry[1])

    def expire(self) -> int:
        """Release every reservation past its timeout; returns how many."""
        now = self._clock()
        stale = [r for r in self._open.values() if r.expires_at <= now]
        for res in stale:
            self.release(res)
        self.expired_total += len(stale)
        return len(stale)

    def prune(self, is_stale: Callable[[BalanceKey], bool]) -> None:
        """Forget unsettled events whose balances all belong to periods that are over."""
        for event_id, (keys, _cost) in list(self._events.items()):
            if all(is_stale(k) for k in keys):
                self.folded([event_id])

    def unsettled_event_ids(self) -> list[str]:
        return list(self._events)

    def unsettled_events(self) -> Mapping[str, tuple[tuple[BalanceKey, ...], int]]:
        """Every unsettled event: its balances and cost (read-only)."""
        return MappingProxyType(self._events)

    def unsettled_of(self, event_ids: Iterable[str], key: BalanceKey) -> int:
        """The unsettled cost on ``key`` of those of ``event_ids`` still in the book."""
        total = 0
        for event_id in event_ids:
            entry = self._events.get(event_id)
            if entry is not None and key in entry[0]:
                total += entry[1]
        return total

    def recent_micros(self, key: BalanceKey) -> int:
        """Reserved on ``key`` since the last :meth:`take_recent` (released or settled ones included)."""
        return self._recent.get(key, 0)

    def take_recent(self, keys: Iterable[BalanceKey] | None = None) -> dict[BalanceKey, int]:
        """Start counting :meth:`recent_micros` again, on every balance or on ``keys``; returns what was
        counted, for :meth:`restore_recent` should the read it marks fail."""
        if keys is None:
            taken, self._recent = self._recent, {}
            return taken
        return {k: self._recent.pop(k) for k in keys if k in self._recent}

    def restore_recent(self, taken: Mapping[BalanceKey, int]) -> None:
        """Count again what :meth:`take_recent` returned (the read it marked failed)."""
        for key, micros in taken.items():
            _bump(self._recent, (key,), micros)

    def reserved_micros(self, key: BalanceKey) -> int:
        """In-flight reservations on ``key`` alone (inspection API, for tests and diagnostics; the
        decision uses :meth:`pending_micros`)."""
        return self._reserved.get(key, 0)

    def unsettled_micros(self, key: BalanceKey) -> int:
        """Completed but not yet folded spend on ``key`` alone (inspection API, like
        :meth:`reserved_micros`)."""
        return self._unsettled.get(key, 0)

    def pending_micros(self, key: BalanceKey) -> int:
        """Reserved plus unsettled: what this proxy knows of that the ledger has not folded yet."""
        return self._reserved.get(key, 0) + self._unsettled.get(key, 0)

    @property
    def open_count(self) -> int:
        """Reservations still open (inspection API, for tests and diagnostics)."""
        return len(self._open)

    @property
    def changed(self) -> bool:
        """Some balance's pending sum changed since the last :meth:`take_changed`."""
        return bool(self._dirty)

    def take_changed(self) -> dict[BalanceKey, int]:
        """Pending sums of the balances changed since the last call (0 where nothing is pending)."""
        changed = {k: self.pending_micros(k) for k in self._dirty}
        self._dirty.clear()
        return changed

    def _add(self, sums: dict[BalanceKey, int], keys: tuple[BalanceKey, ...], amount: int) -> None:
        _bump(sums, keys, amount)
        if amount and keys:
            was_clean = not self._dirty
            self._dirty.update(keys)
            if was_clean and self.on_change is not None:
                self.on_change()

    def mark_changed(self, keys: Iterable[BalanceKey]) -> None:
        """Put balances back on the changed list (their publication to peers failed)."""
        self._dirty.update(keys)


def _bump(sums: dict[BalanceKey, int], keys: tuple[BalanceKey, ...], amount: int) -> None:
    for key in keys:
        total = sums.get(key, 0) + amount
        if total:
            sums[key] = total
        else:
            sums.pop(key, None)
