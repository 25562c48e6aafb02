"""The balance view: the ledger's balances and the budgets, in memory, refreshed from PostgreSQL.

Decisions read only memory (:meth:`BalanceView.decide` does no I/O). A background task keeps it fresh:

- **Budgets** reload on ``LISTEN spendgate_config`` (``budgets_store`` notifies in the changing
  transaction), and in full every ``config_reload_s`` as a safety net; with them the active **policy
  version** (its id, stamped on every usage event, and its routing rules), which ``policies_store``
  notifies the same way.
- **Balances** are polled by version every ``balance_poll_interval_s``: the ledger bumps
  ``balances.version`` from a sequence on every update. Versions are taken before commit, so a
  transaction can commit a version lower than one already seen; every ``OVERLAP_READ_EVERY_S`` the poll
  re-reads from the highest version seen at least ``balance_overlap_s`` ago, which catches rows whose
  ledger transaction took up to that long to commit. Re-reads are idempotent (a row only replaces an
  older version of itself).
- **Unsettled** spend (this proxy's events not yet folded) leaves the reservation book in the same
  repeatable-read snapshot in which the balances that include it are read, so nothing is counted
  twice or dropped.
- **Peers**: each tick publishes this proxy's changed pending sums (reserved + unsettled) and reads
  every other live proxy's (:mod:`.peers`), so spend in flight through another proxy counts too. While
  a peer runs, a change of this proxy's book is published at once by a task of its own, in one
  statement, not behind the refresh in progress; the publication NOTIFYs the peers, which wake and read
  it: a reservation is visible to the other proxies within a few tens of milliseconds. The
  unsettled events behind the sums are listed with them, so the events of a peer that the ledger has
  folded since it published are subtracted in the snapshot that reads the balances (:mod:`.peers`).
- **Near the pause line** that lag is what lets several proxies overshoot together, so there an
  admission is confirmed (:meth:`BalanceView.near_line`, :meth:`BalanceView.confirm`): under a
  per-balance lock in PostgreSQL, the balance and every peer's pending sum are read fresh, the request
  is decided on them, and its reservation is published before the lock is released. The next proxy to
  admit on that balance sees it. Requests that arrive while a confirmation runs are confirmed together in
  the next one (:mod:`.confirming`).
- **Far from the line** admissions stay memory-only, unless the peers may have crossed the alert line
  unseen: under load a peer's sums reach this view 0.1-0.35 s late, and two proxies each admitted $0.78 of a
  $1.00 budget in that time. So while a peer is live, each is assumed to have admitted, unseen, twice what
  this proxy reserved on the balance since it last read them (:data:`UNSEEN_PER_PEER`); when that could
  reach the alert line the admission is confirmed too. A proxy alone, or one whose refreshes keep up with
  its spending, never confirms far from the line.

A failed refresh raises out of the loop: the supervisor logs it and restarts the loop with backoff,
and decisions keep using the last good view meanwhile (:meth:`BalanceView.stale_s` says how old it is;
``enforcement.on_outage`` decides whether a stale view still decides or the proxy refuses with a 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import asyncpg

from spendgate.core.db import DATABASE_TROUBLE, Conn
from spendgate.core.health import Health
from spendgate.core.logs import get_logger
from spendgate.core.supervisor import Beat, Supervisor
from spendgate.domain.constants import PG_NOTIFY_CONFIG, PG_NOTIFY_PENDING
from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.enforcement.decision import Decision, RequestFacts, Standing, decide, standings
from spendgate.domain.enforcement.policy import Policy
from spendgate.domain.enforcement.reservations import ReservationBook
from spendgate.domain.enforcement.scopes import Principal
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.enforcement.stages import StageLevel, stage_for
from spendgate.domain.errors import ConfigError
from spendgate.domain.events import new_id
from spendgate.domain.periods import PeriodKind
from spendgate.domain.policy_versions import PolicyVersion, Verdict
from spendgate.proxy.confirming import ConfirmQueue
from spendgate.proxy.peers import HELLO, PRESENT, STALE_AFTER_S, PeerPending
from spendgate.store.balances.store import balances_and_peers, changed_balances, lock_balances, unlock_balances
from spendgate.store.budgets.store import config_mark, load_budgets
from spendgate.store.policies.store import active_version, versions_mark
from spendgate.store.usage.store import stored_event_ids

log = get_logger(__name__)
OVERLAP_READ_EVERY_S = 0.5
STOP_TIMEOUT_S = 5.0
MIN_REFRESH_SPACING_S = 0.02
BOOK_WAKE_DELAY_S = 0.005
"""A reservation change is published this much later: by then the request that changed it has gone
upstream (admit) or been answered (complete), so the publication is not on its critical path."""
"""A refresh runs at least every poll interval, and sooner (at most every 20 ms) when this proxy's
pending spend changes or a peer announces that its own did."""
UNSEEN_PER_PEER = 2
"""Far from the line, how much a live peer may have admitted that this view has not seen, in multiples of what
this proxy reserved on the balance since it last read the peers: once for what the peer admitted since then,
once for what it had admitted but not yet published when read (:meth:`BalanceView.near_line`)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class BalanceView:
    """Settled balances and the live policy of one proxy, plus its reservation book."""

    def __init__(self, pool: asyncpg.Pool, *, dsn: str, settings: EnforcementSettings,
                 policy: Policy | None = None, book: ReservationBook | None = None,
                 clock: Callable[[], datetime] = utc_now, instance: str | None = None,
                 supervisor: Supervisor | None = None,
                 verify: Callable[[PolicyVersion], Verdict] | None = None) -> None:
        """``verify``: checks a stored policy version's signature before it is enforced (a version that
        fails is not loaded); None: versions are loaded unchecked (no key configured)."""
        self.pool, self.dsn, self.settings = pool, dsn, settings
        self.supervisor = supervisor or Supervisor(Health())
        self.book = book or ReservationBook(settings.reservation_timeout_s)
        self.peers = PeerPending(instance or new_id())
        self._listed: set[str] = set()
        """Unsettled events listed in ``enforcement_unsettled`` (:meth:`_publish`)."""
        self._clock = clock
        self._policy = policy or Policy.from_settings(settings)
        self._settled: dict[BalanceKey, int] = {}
        self._versions: dict[BalanceKey, int] = {}
        self._max_version = 0
        self._marks: deque[tuple[float, int]] = deque()
        self._last_overlap_read = 0.0
        self._pruned_at: date | None = None
        self._config_dirty = False
        self._last_reload = 0.0
        self._stopping = asyncio.Event()
        self.confirmations = ConfirmQueue(self)
        """Admissions near the line, confirmed in batches (:mod:`.confirming`)."""
        self.confirming = asyncio.Lock()
        """One confirmed admission at a time per proxy: the others wait here, not on a pooled connection
        blocked on the database lock (which starved the refresh loop and the ledger of connections)."""
        self._wake = asyncio.Event()
        self._book_wake: asyncio.TimerHandle | None = None
        self._publishing = asyncio.Lock()
        """One background publication at a time (the book's publisher, the refresh loop), each taking the
        changed sums under it: they commit in the order taken."""
        self._publisher: asyncio.Task[None] | None = None
        self.book.on_change = self._wake_after_request
        self._listener: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.config_loads = 0
        self.config_skips = 0
        self._config_mark: tuple[int, ...] | None = None
        self._version_seq = 0
        self._verify = verify
        self.balance_polls = 0
        self._fresh_at = time.monotonic()
        self._peer_heard_at = -STALE_AFTER_S
        self._heard: dict[str, float] = {}
        """When each peer proxy was last heard of (its hello, presence or publication), by instance."""
        self._greeting: asyncio.Task[None] | None = None
        self._noted: tuple[Principal, datetime, list[Standing], str] | None = None
        """:meth:`near_line`'s standings, for the :meth:`decide` that follows it without an await."""

    # -- the request path: memory only ------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        return self._policy

    def decide(self, facts: RequestFacts) -> Decision:
        """Pass, downgrade, cheapest or refuse: from memory, no I/O."""
        noted, self._noted = self._noted, None
        if noted is not None and noted[0] is facts.principal and noted[3] == facts.model:
            return decide(facts, self._policy, self.spent_micros, noted[1], noted[2])
        return decide(facts, self._policy, self.spent_micros, self._clock())

    def spent_micros(self, key: BalanceKey) -> int:
        """Settled (ledger) + unsettled + reserved, this proxy's own and its peers'."""
        return self._settled.get(key, 0) + self.book.pending_micros(key) + self.peers.of(key)

    def settled_micros(self, key: BalanceKey) -> int:
        """What the ledger has folded on ``key``, as this view last read it (inspection API: the
        visibility tests and benchmarks/balance_view_refresh.py watch it; decisions use spent_micros)."""
        return self._settled.get(key, 0)

    def retry_cap(self, principal: Principal) -> int:
        return self._policy.retry_cap_for(principal.scopes())

    def stale_s(self) -> float:
        """Seconds since the last successful refresh: grows while the database is unreachable."""
        return time.monotonic() - self._fresh_at

    # -- near the pause line: confirmed admissions ---------------------------------------------------

    def near_line(self, principal: Principal, model: str = "") -> list[BalanceKey]:
        """The principal's budgeted balances (for a request for ``model``) at the alert or downgrade stage, or
        that the live peers' unseen spend may have taken there (:meth:`_may_have_crossed_unseen`), whose
        admissions are confirmed against every proxy's reservations (:meth:`confirm`). A paused
        balance is refused from memory (its pending spend only overstates it), so a paused client
        hammering the gateway never reaches the database."""
        now = self._clock()
        found = standings(principal, self._policy, self.spent_micros, now, model)
        peers = self.live_peers()
        near = [s.key for s in found if s.stage < StageLevel.PAUSE
                and (s.stage >= StageLevel.ALERT or (peers and self._may_have_crossed_unseen(s, peers)))]
        # Far from the line the decision follows at once (no await in between: the same spend) and
        # reuses these; near it the spend is read again first.
        self._noted = None if near else (principal, now, found, model)
        return near

    def _may_have_crossed_unseen(self, s: Standing, peers: int) -> bool:
        """Whether the alert line may lie within what the live peers admitted that this view has not seen:
        each is assumed to have admitted :data:`UNSEEN_PER_PEER` times what this proxy reserved on the balance
        since it last read them (:meth:`ReservationBook.recent_micros`)."""
        recent = self.book.recent_micros(s.key)
        if not recent:
            return False
        unseen = UNSEEN_PER_PEER * peers * recent
        return stage_for(s.spent_micros + unseen, s.budget_micros, self._policy.budgets[s.key.scope].thresholds) \
            >= StageLevel.ALERT

    def live_peers(self) -> int:
        """How many other proxies announced themselves or published within ``STALE_AFTER_S``."""
        if not self._heard:
            return 0
        since = time.monotonic() - STALE_AFTER_S
        live = sum(1 for at in self._heard.values() if at > since)
        if live < len(self._heard):  # forget the proxies gone quiet (restarts leave one each)
            self._heard = {instance: at for instance, at in self._heard.items() if at > since}
        return live

    @contextlib.asynccontextmanager
    async def confirming_on(self, keys: list[BalanceKey]) -> AsyncIterator[Conn]:
        """A connection holding ``keys``' confirmation locks (session advisory locks): :meth:`confirm`,
        decide, :meth:`publish_confirmed`, then unlock. One at a time per proxy. Should anything fail or be
        cancelled between lock and unlock, the connection is terminated, which releases the locks in the
        server."""
        async with self.confirming, self.pool.acquire() as conn:
            try:
                await lock_balances(conn, keys)
                yield conn
                await unlock_balances(conn, keys)
            except BaseException:
                conn.terminate()
                raise

    async def confirm(self, conn: Conn, keys: list[BalanceKey]) -> None:
        """Under :meth:`confirming_on`'s locks, in one repeatable-read snapshot taken after they are held:
        load ``keys``' settled spend and the peers' pending sums.

        The fresh balance includes this proxy's own events the ledger has folded, which the book still
        holds as unsettled (the next refresh drops them in one snapshot with the balances that include
        them, for every balance they touch). So the balance is kept here less those events' cost, both
        read in the same snapshot: exact; and the peers' sums less their listed events already folded
        (:meth:`PeerPending.folded`). Versions are left alone, so that refresh still reads them.
        """
        pending = self._pending_ids()
        recent = self.book.take_recent(keys)  # what the peers may not have seen restarts from this read
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                folded = set(await stored_event_ids(conn, pending)) if pending else set()
                rows = await balances_and_peers(conn, self.peers.instance, keys, stale_after_s=STALE_AFTER_S)
                peers_folded = await self.peers.folded(conn) if any(r[3] for r in rows) else {}
        except BaseException:
            self.book.restore_recent(recent)
            raise
        for key, spent, version, peers_pending in rows:
            peers = max(peers_pending - peers_folded.get(key, 0), 0)
            if version >= self._versions.get(key, 0):
                self._settled[key] = spent - self.book.unsettled_of(folded, key)
            if peers:
                self.peers.others[key] = peers
            else:
                self.peers.others.pop(key, None)

    async def publish_confirmed(self, conn: Conn, keys: list[BalanceKey]) -> None:
        """Publish this proxy's pending sums on ``keys`` (the reservation just made included), committed
        before the locks are released, so the next proxy to confirm on them reads it. Its own
        read-committed transaction: written inside the repeatable-read snapshot, it failed with a
        serialization error whenever this proxy's refresh loop had updated the same rows since. Not under
        :attr:`_publishing`: the confirmation holds the balance locks, and waiting there behind a background
        publication timed confirmations out under a burst."""
        await self._publish(conn, also=keys)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        # Listen first, then load: the load sees every change committed before it, so the "whatever
        # changed while we were not listening" flag that _listen raises is already answered (it used to
        # rebuild every budget a second time right after start); a NOTIFY after this point sets it again.
        await self._listen()
        await self._announce(HELLO)  # running peers answer: from then on each request is published at once
        self._config_dirty = False
        await self.reload_policy()
        await self.refresh()
        self._last_reload = time.monotonic()
        self._task = self.supervisor.spawn("proxy.balance-view", self._run, self._stopping)

    def _wake_after_request(self) -> None:
        # Only while another proxy is live (it announced itself or a publication within STALE_AFTER_S):
        # it is who a quick publication serves. A proxy on its own publishes at the poll interval, so a
        # request does not cost a publication. Proxies say hello when they start and
        # the running ones answer, so two proxies know of each other before their first request
        # (before, each learnt of the other only from its first publication, at the poll interval: a
        # burst right after start was decided blind to the peer, and two proxies overshot by $0.25 on
        # a $1 budget in test_proxy_budget_concurrency).
        if self._book_wake is None and time.monotonic() - self._peer_heard_at < STALE_AFTER_S:
            self._book_wake = asyncio.get_running_loop().call_later(BOOK_WAKE_DELAY_S, self._book_woke)

    def _book_woke(self) -> None:
        # Publish from a task of its own, not by waking the refresh loop: under a burst the loop is mid-
        # refresh (a dozen round trips through an event loop busy with the burst), and the reservation
        # went out only after that refresh and the next one's publication, 0.3-0.6 s; meanwhile the
        # peers admitted blind to the burst (test_proxy_budget_concurrency[2] overshot by $0.16-0.25).
        self._book_wake = None
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_changes())

    async def _publish_changes(self) -> None:
        """Publish the book's changes until there are none (those made meanwhile too). Should the database
        fail, the refresh loop publishes them on its next tick (and its supervisor reports the failure)."""
        try:
            while self.book.changed and not self._stopping.is_set():
                await self.publish_pending()
        except DATABASE_TROUBLE as exc:
            log.debug("pending spend not published at once; the refresh loop retries", error=type(exc).__name__)
            self._wake.set()

    async def stop(self) -> None:
        """Finish the refresh in progress, stop the loop, withdraw this proxy's pending sums."""
        if self._greeting is not None:
            self._greeting.cancel()
        if self._book_wake is not None:
            self._book_wake.cancel()
            self._book_wake = None
        self._stopping.set()
        await self.confirmations.close()
        if self._publisher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher  # ends after the publication in progress (it may hold a connection)
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=STOP_TIMEOUT_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(*DATABASE_TROUBLE):
            await self._leave()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(*DATABASE_TROUBLE):
                await listener.close(timeout=5)

    async def _leave(self) -> None:
        """Withdraw this proxy's pending sums, unless some of its served requests are not folded yet.

        Those stay published (their last sums, with their events listed) until the ledger folds them, when
        the peers subtract them, or until the rows go stale (``STALE_AFTER_S``). Withdrawn, they counted
        nowhere while the ledger caught up: a proxy restarted while a ledger rebalanced hid its last
        seconds of spend from every proxy, and two proxies let a paused developer overshoot the pause line
        by $0.13-0.23 in test_separate_processes.
        """
        if not self.book.unsettled_event_ids():
            await self.peers.withdraw(self.pool)
            return
        async with self._publishing, self.pool.acquire() as conn:
            await self._publish(conn)  # whatever changed since the last publication

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        await conn.add_listener(PG_NOTIFY_CONFIG, self._on_config)
        await conn.add_listener(PG_NOTIFY_PENDING, self._on_pending)
        self._listener = conn
        self._config_dirty = True  # whatever changed while we were not listening
        self._wake.set()

    def _on_config(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._config_dirty = True
        self._wake.set()

    def _on_pending(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        text = str(payload)
        if text.endswith(self.peers.instance):
            return  # our own
        self._peer_heard_at = time.monotonic()
        self._heard[text.removeprefix(HELLO).removeprefix(PRESENT)] = self._peer_heard_at
        if text.startswith(HELLO):  # a proxy started: it does not know this one runs yet
            self._answer_hello()
        elif not text.startswith(PRESENT):  # a peer's pending spend changed: read it now
            self._wake.set()

    def _answer_hello(self) -> None:
        if self._greeting is not None and not self._greeting.done():
            return
        self._greeting = asyncio.get_running_loop().create_task(self._announce(PRESENT))

    async def _announce(self, kind: str) -> None:
        # Best effort: a peer that misses it learns of this proxy from its next publication or heartbeat.
        with contextlib.suppress(*DATABASE_TROUBLE):
            await self.peers.announce(self.pool, kind)

    async def _run(self, stopping: asyncio.Event, beat: Beat) -> None:
        """The refresh loop (run by the supervisor): wait for a wake-up or the poll interval, refresh."""
        interval = self.settings.balance_poll_interval_s
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # races with the event being set, and then stop() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            if stopping.is_set():
                return
            self._wake.clear()
            started = time.monotonic()
            if self._listener is None or self._listener.is_closed():
                self._listener = None
                await self._listen()
            if self._config_dirty or started - self._last_reload >= self.settings.config_reload_s:
                notified, self._config_dirty = self._config_dirty, False
                try:
                    await self.reload_policy(only_if_changed=not notified)
                except BaseException:
                    self._config_dirty = True  # reload again on the next tick
                    raise
                self._last_reload = time.monotonic()
            await self.refresh()
            beat()
            # Coalesce bursts of wake-ups (every reservation, every peer's publication).
            spare = MIN_REFRESH_SPACING_S - (time.monotonic() - started)
            if spare > 0 and not stopping.is_set():
                await asyncio.sleep(spare)

    # -- refreshing -------------------------------------------------------------------------------

    async def reload_policy(self, *, only_if_changed: bool = False) -> None:
        """Load every budget and active raise; swap the policy whole.

        ``only_if_changed`` (the periodic safety net) first compares a fingerprint of both tables (row
        counts and version sums: every insert, update and delete changes one) and skips the load when
        nothing changed: building 10,000 budgets takes 40-100 ms of the event loop, a stall every
        request in flight would feel.
        """
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            mark = (*await config_mark(conn), await versions_mark(conn))
            if only_if_changed and mark == self._config_mark:
                self.config_skips += 1
                return
            budgets, raises = await load_budgets(conn, self._clock())
            version = await active_version(conn) if mark[-1] != self._version_seq else None
        self._config_mark = mark
        policy = self._policy.with_budgets(budgets, raises)
        if version is not None:
            self._version_seq = version.seq
            verdict = self._verify(version) if self._verify is not None else None
            try:
                if verdict is not None and not verdict.ok:
                    raise ConfigError(verdict.problem)
                policy = policy.under_version(version.version_id, version.document)
            except ConfigError as exc:  # a row changed by hand: keep enforcing the version loaded before
                log.error("the active policy version does not verify or cannot be read; keeping the previous "
                          "version", version=version.version_id, kept=self._policy.version, error=exc.message)
        self._policy = policy
        self.config_loads += 1

    def _cutoffs(self) -> tuple[date, date]:
        today = self._clock().date()
        last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        return today - timedelta(days=2), last_month

    def _since_version(self) -> int:
        now = time.monotonic()
        if now - self._last_overlap_read < OVERLAP_READ_EVERY_S:
            return self._max_version
        self._last_overlap_read = now
        safe = 0
        while self._marks and self._marks[0][0] <= now - self.settings.balance_overlap_s:
            safe = self._marks.popleft()[1]
        if safe:
            self._marks.appendleft((now - self.settings.balance_overlap_s, safe))
        return safe

    async def refresh(self) -> int:
        """One poll: changed balances, folded own events, expired reservations. Returns rows read.

        New reservations are published to the peers first (that is what they must see soonest), unless
        the book's own publisher is at it (:meth:`_book_woke`); decreases found by this poll (folded
        events, expired reservations) are published after it.
        """
        if self._publisher is None or self._publisher.done():
            await self.publish_pending()
        since = self._since_version()
        day_cutoff, month_cutoff = self._cutoffs()
        recent = self.book.take_recent()  # taken before the snapshot: later reservations count as unseen
        try:
            async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
                rows = await changed_balances(conn, since, day_cutoff=day_cutoff, month_cutoff=month_cutoff)
                # An event is folded in the same transaction as its balances: when no balance changed in
                # this snapshot, none of ours can have been folded, and the lookup (which grows with the
                # backlog while the ledger is down or behind) is skipped.
                pending = self._pending_ids() if rows else []
                folded = await stored_event_ids(conn, pending) if pending else []
                await self.peers.read(conn)
        except BaseException:
            self.book.restore_recent(recent)
            raise
        for r in rows:
            if r.version >= self._versions.get(r.key, 0):
                self._versions[r.key] = r.version
                self._settled[r.key] = r.spent_micros
            self._max_version = max(self._max_version, r.version)
        self._marks.append((time.monotonic(), self._max_version))
        self.book.folded(folded)
        self.book.expire()
        await self.publish_pending()
        if day_cutoff != self._pruned_at:
            self._prune(day_cutoff, month_cutoff)
        self.balance_polls += 1
        self._fresh_at = time.monotonic()
        return len(rows)

    def _pending_ids(self) -> list[str]:
        """Unsettled event ids to look up; ids that are not UUIDs can never be folded and are dropped."""
        ids: list[str] = []
        bad: list[str] = []
        for event_id in self.book.unsettled_event_ids():
            (ids if _is_uuid(event_id) else bad).append(event_id)
        if bad:
            log.warning("dropping unsettled spend of events with non-UUID ids", count=len(bad))
            self.book.folded(bad)
        return ids

    async def publish_pending(self) -> None:
        """Tell the peers this proxy's changed pending sums (retried next tick if it fails)."""
        if not self.book.changed and not self.peers.heartbeat_due():
            return
        async with self._publishing, self.pool.acquire() as conn:
            if self.book.changed or self.peers.heartbeat_due():  # not published by another meanwhile
                await self._publish(conn)

    async def _publish(self, conn: Conn, also: list[BalanceKey] | None = None) -> None:
        """Publish the changed pending sums (and ``also`` these) with the unsettled events listed behind them
        (:mod:`.peers`). Sums and events are taken together, with no await between: every event that
        entered or left the book before then changed the sums of its balances, so a peer never sees an
        event listed whose cost is not in the published sum (it would subtract it once folded)."""
        changed = self.book.take_changed()
        changed.update({k: self.book.pending_micros(k) for k in also or ()})
        events = self.book.unsettled_events()
        listed = [(e, keys, cost) for e, (keys, cost) in events.items() if e not in self._listed and _is_uuid(e)]
        unlisted = [e for e in self._listed if e not in events]
        try:
            await self.peers.publish(conn, changed, listed=listed, unlisted=unlisted)
        except BaseException:
            self.book.mark_changed(changed)
            raise
        self._listed.update(e for e, _, _ in listed)
        self._listed.difference_update(unlisted)

    def _prune(self, day_cutoff: date, month_cutoff: date) -> None:
        def stale(key: BalanceKey) -> bool:
            if key.period is PeriodKind.WEEK:
                return key.period_start < day_cutoff - timedelta(days=7)  # changed_balances' week cutoff
            return key.period_start < (day_cutoff if key.period is PeriodKind.DAY else month_cutoff)

        self._pruned_at = day_cutoff
        for key in [k for k in self._settled if stale(k)]:
            del self._settled[key]
            self._versions.pop(key, None)
        self.book.prune(stale)


def _is_uuid(event_id: str) -> bool:
    try:
        uuid.UUID(event_id)
    except ValueError:
        return False
    return True
