"""The self-improving policy's simulation (issue 13, "Done when"): an org of three teams over simulated weeks,
through the real proxy, ledger and fake upstream (tests/support/org_sim.py). The cheaper model's tool calls
fail far more often for team ``web``'s turns than the flagship's, and as rarely as the flagship's for team
``platform``'s. With exploration on for both, the turn outcomes measure exactly that: web's explored arm
scores clearly lower than its control arm, platform's does not. Then the change ``policy suggest`` should
propose, written by hand, is dry-run, applied and run for two more weeks: the spend falls by the estimate
and platform's quality holds."""

from __future__ import annotations

import time
from pathlib import Path

from spendgate.admin.dryrun import dry_run
from spendgate.domain.enforcement import policy_from_document
from spendgate.domain.learning import Regression, regression
from tests.support.org_sim import FLAGSHIP, arms_of, org_simulation

TOLERANCE = 0.02
EXPLORATION = {"share_pct": 30, "teams": ["web", "platform"], "max_input_tokens": 8000}


async def test_exploration_measures_what_the_cheaper_model_does_to_each_team(db_url: str, tmp_path: Path) -> None:
    """Four simulated weeks with exploration on for web and platform: web's explored arm scores clearly
    lower than its control arm, platform's within the 2 % tolerance."""
    async with org_simulation(db_url, tmp_path, seed=7) as sim:
        await sim.apply({"exploration": EXPLORATION}, "learn what gpt-5.1-mini does to web and platform turns")
        started = time.monotonic()
        since, until = await sim.run_weeks(4)
        elapsed = time.monotonic() - started
        print(f"simulated 4 weeks: {sim.stats.turns} turns, {sim.stats.requests} requests in {elapsed:.1f} s "
              f"({sim.stats.requests / elapsed:.0f} requests/s); models {sim.stats.by_model}")
        web = await sim.turn_scores("web", since, until)
        platform = await sim.turn_scores("platform", since, until)
        data = await sim.turn_scores("data", since, until)
        spend = await sim.spend_by_team(since, until)

        # Explored turns in both teams, served by the next cheaper model; the rest are the control arm on the
        # flagship; the team outside the experiment has no arm at all.
        for scores in (web, platform):
            explored = [(arm, model) for arm, model, _ in scores if arm == "explore"]
            controls = [(arm, model) for arm, model, _ in scores if arm == "control"]
            assert len(explored) >= 200 and {m for _, m in explored} == {"gpt-5.1-mini"}
            assert len(controls) >= 500 and {m for _, m in controls} == {FLAGSHIP}
            assert 0.2 < len(explored) / len(scores) < 0.4
        assert data and {(arm, model) for arm, model, _ in data} == {(None, FLAGSHIP)}
        assert set(spend) == {"web", "platform", "data"} and all(v > 0 for v in spend.values())

        web_reg = regression(arms_of(web, "control"), arms_of(web, "explore"))
        platform_reg = regression(arms_of(platform, "control"), arms_of(platform, "explore"))
        print(f"web: {web_reg}\nplatform: {platform_reg}")
        assert isinstance(web_reg, Regression) and isinstance(platform_reg, Regression)
        assert web_reg.exceeds(TOLERANCE) and web_reg.regression > 0.05
        assert platform_reg.within(TOLERANCE) and not platform_reg.exceeds(TOLERANCE)

        # ---- what suggest should propose, by hand: platform's small turns to gpt-5.1-mini ----
        # The harness carries the rest of the done-when: the dry-run of the last 30 days estimates the saving,
        # the rule is applied as a signed version, two more weeks run under it, and platform's spend per week
        # falls by the estimate (within 5 %) while its quality stays within the tolerance.
        rule = {"name": "platform-small", "scope": "team:platform", "max_input_tokens": 8000, "model": "gpt-5.1-mini"}
        proposal = {"routing_rules": [rule], "exploration": {**EXPLORATION, "teams": ["web"]}}
        settings = sim.ledger.settings
        estimate, _ = await dry_run(sim.pool, policy_from_document(proposal, settings.enforcement),
                                    settings.pricing.table(), days=30, now=until)
        saved_per_week = (estimate.actual_micros - estimate.spend_micros) / 4  # four weeks of traffic in the 30 days
        await sim.apply(proposal, "route platform's small turns to gpt-5.1-mini")
        after_since, after_until = await sim.run_weeks(2)
        after = await sim.spend_by_team(after_since, after_until)
        fell_per_week = spend["platform"] / 4 - after["platform"] / 2
        print(f"platform: estimated saving {saved_per_week:.0f} micro-USD/week, measured {fell_per_week:.0f} "
              f"({fell_per_week / saved_per_week - 1:+.1%})")
        assert saved_per_week > 0
        assert abs(fell_per_week - saved_per_week) <= 0.05 * saved_per_week
        platform_after = await sim.turn_scores("platform", after_since, after_until)
        assert {model for _, model, _ in platform_after} == {"gpt-5.1-mini"}
        kept = regression(arms_of(platform, "control"), [score for _, _, score in platform_after])
        assert isinstance(kept, Regression) and kept.within(TOLERANCE), kept

        # ---- policy suggest (issue 13 items 3-5, built in parallel; asserted here once it is merged) ----
        # TODO(suggest): with the four weeks above as its history:
        #   proposals = await suggest(sim.pool, ..., now=sim.clock.now, tolerance=2)
        #   - it proposes routing platform's small turns to gpt-5.1-mini, and nothing cheaper for web;
        #   - estimated = the proposal's estimated 30-day saving for platform (micro-dollars);
        #   - await sim.apply(proposal.document, "apply the suggestion")
        #   - after_since, after_until = await sim.run_weeks(4)
        #   - before = spend (above), after = await sim.spend_by_team(after_since, after_until):
        #     before["platform"] - after["platform"] is within the proposal's stated error of `estimated`
        #     (scale by the window lengths if they differ), and web's spend does not fall;
        #   - platform's quality after (sim.turn_scores("platform", after_since, after_until)) against its
        #     control arm before: regression(...).within(TOLERANCE).
