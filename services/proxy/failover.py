"""Sending one request down the pool's plan: the next upstream on a 429, a 5xx, a connection failure
or a timeout, as long as nothing has been relayed to the client (nothing is, before the answer's
status is known). Each attempt's verdict goes back to the pool (breakers, ``Retry-After`` rests);
the failed attempts leave no usage event (the provider did not bill them) but count in
``spendgate_upstream_failover_total``. The last upstream's answer, error or not, is the client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from spendgate.core.logs import get_logger
from spendgate.proxy.upstreams import Circuit, FailReason, Pool, Upstream, retry_after_s

UPSTREAM_DOWN = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    response: aiohttp.ClientResponse
    upstream: Upstream


class NoUpstream(Exception):
    """Every upstream serving the model rests (open circuit or ``Retry-After``): nothing was sent."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("every upstream for this model is resting")
        self.retry_after_s = retry_after_s


def _failure(status: int) -> FailReason | None:
    if status == 429:
        return "rate_limited"
    return "server_error" if status >= 500 else None


async def open_with_failover(pool: Pool, model: str | None,
                             send: Callable[[Upstream], Awaitable[aiohttp.ClientResponse]], *,
                             headers_timeout_s: float | None = None) -> Opened:
    """The first answer along the pool's plan for ``model`` that is not a failure, else the last
    upstream's answer; a connection failure or timeout of the last upstream is raised as it came,
    :class:`NoUpstream` when the plan is empty. Before moving on, the rest of the plan is checked again:
    an upstream that started resting meanwhile (another request's failure, a half-open probe taken) is
    skipped."""
    remaining: list[Upstream] = pool.plan(model)
    if not remaining:
        raise NoUpstream(pool.resting_s(model))
    while True:
        upstream = remaining.pop(0)
        pool.taken(upstream)
        failure: BaseException | None = None
        reason: FailReason
        rest: float | None
        try:
            if remaining and headers_timeout_s is not None:
                async with asyncio.timeout(headers_timeout_s):
                    response = await send(upstream)
            else:
                response = await send(upstream)
        except UPSTREAM_DOWN as exc:
            failure, reason, detail, rest = exc, "unreachable", type(exc).__name__, None
        except TimeoutError as exc:
            failure, reason, detail, rest = exc, "timeout", "no response headers in time", None
        except BaseException:
            pool.abandoned(upstream)
            raise
        if failure is None:
            status_failure = _failure(response.status)
            if status_failure is None:
                pool.succeeded(upstream)
                return Opened(response, upstream)
            reason, detail = status_failure, str(response.status)
            rest = retry_after_s(response.headers.get("retry-after"), response.headers.get("retry-after-ms"))
        remaining = [u for u in remaining if pool.ready(u)]
        _failed(pool, upstream, reason, bool(remaining), detail=detail, retry_after=rest)
        if not remaining:
            if failure is not None:
                raise failure
            return Opened(response, upstream)
        if failure is None:
            response.release()


def _failed(pool: Pool, upstream: Upstream, reason: FailReason, more: bool, *, detail: str,
            retry_after: float | None = None) -> None:
    pool.failed(upstream, reason, retry_after_s=retry_after, failing_over=more)
    circuit = pool.state(upstream.name)
    # a sole upstream's 429s are the client's to see and back off on: a warning only when the pool acts
    say = log.warning if more or circuit is not Circuit.CLOSED else log.info
    say("upstream attempt failed", upstream=upstream.name, reason=reason, detail=detail, retry_after_s=retry_after,
        failing_over=more, circuit=circuit.name.lower())
