"""The self-improving policy's simulation (issue 13, "Done when"): an org of three teams over simulated weeks,
through the real proxy, ledger and fake upstream (tests/support/org_sim.py). The cheaper model's tool calls
fail far more often for team ``web``'s turns than the flagship's, and as rarely as the flagship's for team
``platform``'s. With exploration on for both, the turn outcomes measure exactly that: web's explored arm
scores clearly lower than its control arm, platform's does not. Then ``policy suggest`` proposes the cheaper
route for platform and not for web; the suggestion is applied as a signed version and four more weeks run:
platform's spend falls by the estimated saving within its stated error, and its quality holds."""

from __future__ import annotations

import math
import time
from pathlib import Path

from spendgate.admin.suggest import suggest
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

        # ---- policy suggest, with these four weeks as its history ----
        settings = sim.ledger.settings
        found = await suggest(sim.pool, settings, settings.pricing.table(), now=until, days=30,
                              tolerance_pct=TOLERANCE * 100)
        for line in [*(x.summary for x in found.suggestions), *(x.summary for x in found.not_proposed)]:
            print(line)
        proposals = {x.scope: x for x in found.suggestions}
        assert set(proposals) == {"team:platform"}, "the cheaper route is proposed for platform and only for it"
        chosen = proposals["team:platform"]
        assert chosen.kind == "routing_rule" and chosen.change["model"] == "gpt-5.1-mini"
        assert chosen.dry_run.extra_pauses <= 0 and chosen.dry_run.saved_micros > 0
        assert chosen.evidence is not None and chosen.evidence.explored_n >= 200 and chosen.evidence.biased is None
        web_verdicts = {x.verdict for x in found.not_proposed if x.scope == "team:web"}
        assert web_verdicts and web_verdicts <= {"harmful", "uncertain"}, web_verdicts
        [data_note] = [x for x in found.not_proposed if x.scope == "team:data" and x.kind == "routing_rule"]
        assert data_note.verdict == "needs_data" and "add data to the policy's exploration" in data_note.summary

        # Applied as a signed version, then four more weeks: platform's spend falls by the estimate, within
        # the error the suggestion states (its own sampling error and the new weeks' own, each 95 %).
        weeks_before, weeks_after = 4, 4
        await sim.apply(chosen.document, f"apply suggestion {chosen.id}")
        after_since, after_until = await sim.run_weeks(weeks_after)
        after = await sim.spend_by_team(after_since, after_until)
        estimated = chosen.estimated_saving_micros / weeks_before
        error = chosen.saving_error_micros / weeks_before
        fell = spend["platform"] / weeks_before - after["platform"] / weeks_after
        print(f"platform: estimated saving {estimated:.0f} ± {error:.0f} micro-USD/week, measured {fell:.0f} "
              f"({fell / estimated - 1:+.1%})")
        assert estimated > 0 and 0 < error < estimated
        assert abs(fell - estimated) <= math.sqrt(2) * error, (fell, estimated, error)

        # Platform's quality stays within the tolerance of its control arm before the change.
        platform_after = await sim.turn_scores("platform", after_since, after_until)
        assert len(platform_after) >= 500
        kept = regression(arms_of(platform, "control"), [score for _, _, score in platform_after])
        assert isinstance(kept, Regression) and kept.within(TOLERANCE), kept
