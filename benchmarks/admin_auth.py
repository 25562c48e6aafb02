"""What a credential costs per admin API call: the break-glass token, a named API token, a sign-in session.

    .venv/bin/python -m benchmarks.admin_auth [--requests 2000]

The admin app is served in this process over a scratch database; ``--requests`` sequential
``GET /openapi.json`` calls (no query of their own: what is measured is the identity chain) are timed per
credential, after 100 warm-up calls. Printed: the median and p99 wall time per call and this process's
CPU time per call (user + system; client and server share the process, so the figures compare
credentials rather than give a server's absolute cost). A named token and a session each add one
indexed lookup by SHA-256 to the break-glass token's constant-time comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from benchmarks.support import scratch_database
from spendgate.admin.app import create_app
from spendgate.admin.deps import Deps
from spendgate.core.config import Settings
from spendgate.core.config_services import ConsoleSettings
from spendgate.store.access import store as access
from spendgate.store.access.store import Principal

ADMIN = "bench-admin-token"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _time(client: TestClient, headers: dict[str, str], n: int) -> tuple[float, float, float]:  # type: ignore[type-arg]
    for _ in range(100):
        assert (await client.get("/openapi.json", headers=headers)).status == 200
    walls = []
    cpu0 = _cpu()
    for _ in range(n):
        t0 = time.perf_counter()
        resp = await client.get("/openapi.json", headers=headers)
        await resp.read()
        walls.append(time.perf_counter() - t0)
        assert resp.status == 200
    cpu = (_cpu() - cpu0) / n
    walls.sort()
    return statistics.median(walls), walls[int(len(walls) * 0.99)], cpu


async def main(n: int) -> None:
    async with scratch_database() as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        try:
            settings = Settings(admin_token=SecretStr(ADMIN), console=ConsoleSettings(secure_cookies=False))
            app = create_app(Deps(pool, settings, settings.pricing.table()))
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                from datetime import UTC, datetime, timedelta

                later = datetime.now(UTC) + timedelta(days=1)
                _, secret = await access.create_token(pool, name="bench", role="finops", teams=(), developer=None,
                                                      expires_at=later, created_by="bench")
                session_id, _ = await access.create_session(pool, Principal("u", "U", "finops"), expires_at=later)
                cases = {"break-glass token": {"Authorization": f"Bearer {ADMIN}"},
                         "named API token": {"Authorization": f"Bearer {secret}"},
                         "sign-in session": {"Cookie": f"spendgate_session={session_id}"}}
                print(f"{n} sequential GET /openapi.json per credential")
                for name, headers in cases.items():
                    p50, p99, cpu = await _time(client, headers, n)
                    print(f"  {name:18s} p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
                          f"CPU {cpu * 1e3:6.2f} ms/call")
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
