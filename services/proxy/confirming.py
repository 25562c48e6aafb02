"""Confirmed admissions of one proxy, in batches: one lock, one fresh read and one publication for every
admission waiting (:class:`ConfirmQueue`).

Near the pause line every admission is confirmed (:meth:`BalanceView.near_line`). One at a time, each cost
a lock, a snapshot and a publication, 20-60 ms on a loaded machine, and a proxy with 32 clients in flight on
one budget queued them for longer than the 2 s confirmation timeout: the late ones were decided from memory, which
is what confirmation is there to prevent. So the requests that arrive while a confirmation runs wait for
the next one together: it takes the balance locks of all of them, reads them fresh, decides each request in
arrival order (each decision sees the reservations of those before it, in this proxy's book) and hands it
its decision at once, then publishes once and unlocks. Another proxy confirming on the same balances waits
for the lock and sees them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spendgate.core.logs import get_logger
from spendgate.domain.enforcement import Admission
from spendgate.domain.enforcement.balances import BalanceKey

if TYPE_CHECKING:
    from spendgate.proxy.view import BalanceView

log = get_logger(__name__)
CONFIRM_TIMEOUT_S = 2.0
"""How long one confirmation may take to lock, read, decide and publish; past it, its requests are decided
from memory (the database is in trouble). A request waits for at most the confirmation in progress and
its own. (A timeout per request, counted from its arrival, also expired for requests that had only queued
behind a slow batch on a congested event loop: batches took 0.3-2.1 s each under load.)"""


@dataclass(frozen=True, slots=True)
class _Waiting:
    keys: list[BalanceKey]
    admit: Callable[[], Admission]
    decided: asyncio.Future[Admission]


class ConfirmQueue:
    def __init__(self, view: BalanceView) -> None:
        self.view = view
        self._waiting: list[_Waiting] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        """Confirmations run (inspection API: tests compare it with the admissions confirmed)."""

    @property
    def waiting(self) -> int:
        """Requests waiting for the next batch (inspection API, for tests)."""
        return len(self._waiting)

    async def admit(self, keys: list[BalanceKey], admit: Callable[[], Admission]) -> Admission:
        """``admit()`` under the locks of ``keys``, on balances and peers' sums read fresh, in the next batch.
        Raises what the database raised, or TimeoutError past :data:`CONFIRM_TIMEOUT_S`; cancelled (its request
        went away), the request is left out of its batch."""
        decided: asyncio.Future[Admission] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(keys, admit, decided))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())
        try:
            return await decided
        except asyncio.CancelledError:
            # Cancelled just as its batch decided it: nothing will be forwarded, so drop its reservation.
            if decided.done() and not decided.cancelled() and decided.exception() is None:
                reservation = decided.result().reservation
                if reservation is not None:
                    self.view.book.release(reservation)
            raise

    async def close(self) -> None:
        """Stop the batch in progress, if any (its requests decide from memory, as on a timeout)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        waiting, self._waiting = self._waiting, []
        for w in waiting:
            if not w.decided.done():
                w.decided.set_exception(ConnectionError("the confirmation was stopped"))

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._confirm(batch)
            except BaseException as exc:
                for w in batch:
                    if not w.decided.done():  # stopped: its request decides from memory, as on a timeout
                        w.decided.set_exception(exc if isinstance(exc, Exception)
                                                else ConnectionError("the confirmation was stopped"))
                if not isinstance(exc, Exception):
                    raise

    async def _confirm(self, batch: list[_Waiting]) -> None:
        keys = list(dict.fromkeys(k for w in batch for k in w.keys))
        reserved = False
        async with asyncio.timeout(CONFIRM_TIMEOUT_S), self.view.confirming_on(keys) as conn:
            await self.view.confirm(conn, keys)
            self.batches += 1
            for w in batch:
                if w.decided.done():
                    continue  # its request went away meanwhile
                try:
                    admission = w.admit()
                except Exception as exc:  # noqa: BLE001 - the request's own failure, raised in its handler
                    w.decided.set_exception(exc)
                    continue
                w.decided.set_result(admission)
                reserved = reserved or admission.reservation is not None
            if reserved:
                try:
                    await self.view.publish_confirmed(conn, keys)
                except BaseException as exc:
                    log.warning("confirmed admissions not published before the unlock; the refresh loop "
                                "publishes them", error=type(exc).__name__)
                    raise
