"""Cost of the enforcement decision on the request path, with a budget on every key.

    .venv/bin/python -m benchmarks.enforcement_decision [--keys 10000] [--calls 20000]

CPU time per call (``time.process_time``). Budgets: every key (daily), every team (daily + monthly,
Europe/Berlin), the org (monthly); balances for all of them in memory. Prints µs per call for
- ``decide``: the pure decision as ``BalanceView.decide`` runs it (memory only, no I/O);
- ``admit+complete``: the whole per-request enforcement (the proxy's one session token estimate, which
  metering shares, retry detector hashing a 40 KB Codex body, decision, reservation, settle, and the
  estimator learning from the reported usage);
- the baseline ``json.loads`` of the same 40 KB body, which the proxy does anyway, for a ratio.

Targets, against that baseline in the same run: ``decide`` <= 0.2x, ``admit+complete`` <= 1x (the
whole enforcement costs less than parsing the body once). Exits non-zero when one is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a file (python benchmarks/x.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.support import Verdict
from spendgate.domain.enforcement import (
    BalanceKey,
    Budget,
    Decision,
    Enforcer,
    Policy,
    Principal,
    RequestFacts,
    ReservationBook,
    RetryDetector,
    SessionEstimator,
    balance_keys,
    decide,
)
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.pricing import PriceTable

USD = 1_000_000


class MemoryView:
    def __init__(self, policy: Policy, settled: dict[BalanceKey, int]) -> None:
        self.policy, self.settled, self.book = policy, settled, ReservationBook(900)

    def spent_micros(self, key: BalanceKey) -> int:
        return self.settled.get(key, 0) + self.book.pending_micros(key)

    def decide(self, facts: RequestFacts) -> Decision:
        return decide(facts, self.policy, self.spent_micros, datetime.now(UTC))

    def retry_cap(self, principal: Principal) -> int:
        return self.policy.retry_cap_for(principal.scopes())


def codex_body(i: int) -> tuple[dict[str, object], bytes]:
    items: list[dict[str, object]] = [{"type": "message", "role": "user", "content": "fix the failing test " * 20}]
    for n in range(60):
        items.append({"type": "function_call", "name": "exec_command", "call_id": f"c{n}",
                      "arguments": json.dumps({"cmd": f"sed -n {n},{n + 40}p src/module_{n}.py"})})
        items.append({"type": "function_call_output", "call_id": f"c{n}",
                      "output": f"Chunk ID: {n}\nProcess exited with code 0\nOutput:\n" + "x = 1\n" * 80})
    body: dict[str, object] = {"model": "gpt-5.1", "input": items, "stream": True, "prompt_cache_key": f"s{i}"}
    return body, json.dumps(body).encode()


def per_call_us(fn: object, calls: int) -> float:
    """CPU µs per call (process time: the least noisy figure on a shared machine)."""
    assert callable(fn)
    t0 = time.process_time()
    for i in range(calls):
        fn(i)
    return (time.process_time() - t0) / calls * 1e6


def main(keys: int, calls: int) -> int:
    rng = random.Random(1)
    teams = [f"team{t}" for t in range(max(1, keys // 50))]
    principals = [Principal(f"k{i}", f"dev{i}", teams[i % len(teams)]) for i in range(keys)]
    budgets = [Budget(f"key:k{i}", daily_micros=40 * USD) for i in range(keys)]
    budgets += [Budget(f"team:{t}", daily_micros=400 * USD, monthly_micros=8000 * USD, timezone="Europe/Berlin")
                for t in teams]
    budgets.append(Budget("org", monthly_micros=10**6 * USD))
    policy = Policy.from_settings(EnforcementSettings(), budgets)
    now = datetime.now(UTC)
    settled = {k: rng.randrange(0, 45 * USD) for p in principals for k, _ in balance_keys(p, policy, now)}
    view = MemoryView(policy, settled)
    facts = [RequestFacts(p, "gpt-5.1", rng.randrange(1_000, 20_000), f"s{i}") for i, p in enumerate(principals)]
    enforcer = Enforcer(view, prices=PriceTable(), detector=RetryDetector())
    estimator = SessionEstimator(output_cap_tokens=8192)
    bodies = [codex_body(i) for i in range(64)]
    print(f"{keys} keys, {len(teams)} teams, {len(settled)} balances in memory; "
          f"body {len(bodies[0][1]) / 1024:.0f} KB")

    d_us = per_call_us(lambda i: view.decide(facts[i % keys]), calls)

    def full(i: int) -> None:
        _, raw = bodies[i % 64]
        session = f"s{i % 64}"
        estimate = estimator.estimate(session, len(raw))
        adm = enforcer.admit(principals[i % keys], "gpt-5.1", session_id=session, raw=raw, estimate=estimate)
        enforcer.complete(adm, event_id=f"e{i}", cost_micros=1000)
        estimator.observe(session, body_bytes=len(raw), input_tokens=9000, output_tokens=300)
        view.book.folded([f"e{i}"])

    a_us = per_call_us(full, calls // 4)
    j_us = per_call_us(lambda i: json.loads(bodies[i % 64][1]), calls // 4)
    print(f"decide:           {d_us:7.1f} µs per request")
    print(f"admit+complete:   {a_us:7.1f} µs per request")
    print(f"json.loads body:  {j_us:7.1f} µs (baseline); admit+complete / json.loads = {a_us / j_us:.2f}")
    verdict = Verdict("enforcement decision")
    verdict.at_most("decide, per request", d_us, j_us, 0.2, unit=" us", baseline_name="json.loads")
    verdict.at_most("admit+complete, per request", a_us, j_us, 1.0, unit=" us", baseline_name="json.loads")
    return verdict.finish()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    sys.exit(main(args.keys, args.calls))
