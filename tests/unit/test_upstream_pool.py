"""The upstream pool's rules (weighted order, Retry-After rests, circuit breaker) and its configuration's
errors, with a hand-moved clock."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from spendgate.cli import main
from spendgate.core.config import load_settings
from spendgate.domain.errors import ConfigError
from spendgate.proxy.failover import NoUpstream, open_with_failover
from spendgate.proxy.upstreams import (
    ANTHROPIC_NAME,
    DEFAULT_NAME,
    Circuit,
    Pool,
    Upstream,
    anthropic_pool_from_settings,
    pool_from_settings,
    retry_after_s,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pool(clock: Clock, *weights: int, **kwargs: object) -> Pool:
    upstreams = [Upstream(f"u{i}", "openai", f"http://u{i}.test/v1", None, weight=w) for i, w in enumerate(weights)]
    return Pool(upstreams, clock=clock, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


def test_weights_set_how_often_an_upstream_comes_first() -> None:
    """With weights 3:1 the first upstream leads about three plans in four (seeded, so exact each run)."""
    pool = _pool(Clock(), 3, 1)
    firsts = Counter(pool.plan("gpt-5.1")[0].name for _ in range(4000))
    assert 0.72 < firsts["u0"] / 4000 < 0.78
    assert all(len(pool.plan("gpt-5.1")) == 2 for _ in range(10))


def test_retry_after_rests_an_upstream_until_it_runs_out() -> None:
    """A failure with Retry-After keeps the upstream out of plans for that long, capped by max_retry_after_s."""
    clock = Clock()
    pool = _pool(clock, 1, 1, max_retry_after_s=60.0)
    u0 = pool.upstreams[0]
    pool.failed(u0, "rate_limited", retry_after_s=3600.0, failing_over=True)
    assert [u.name for u in pool.plan("m")] == ["u1"]
    assert pool.resting_s("m") == 0.0  # u1 is ready
    clock.now += 59.9
    assert [u.name for u in pool.plan("m")] == ["u1"]
    clock.now += 0.2
    assert {u.name for u in pool.plan("m")} == {"u0", "u1"}
    assert pool.failovers == {("u0", "rate_limited"): 1}


def test_circuit_opens_half_opens_for_one_probe_and_recloses() -> None:
    """closed → open after N consecutive failures → half-open after the cool-down (one probe) → closed."""
    clock = Clock()
    pool = _pool(clock, 1, 1, failure_threshold=2, cooldown_s=30.0)
    u0 = pool.upstreams[0]
    pool.failed(u0, "server_error")
    assert pool.state("u0") is Circuit.CLOSED
    pool.succeeded(u0)
    pool.failed(u0, "server_error")  # the success reset the count: one failure in a row
    assert pool.state("u0") is Circuit.CLOSED
    pool.failed(u0, "unreachable")
    assert pool.state("u0") is Circuit.OPEN
    assert [u.name for u in pool.plan("m")] == ["u1"]
    clock.now += 29.0
    assert pool.state("u0") is Circuit.OPEN and pool.resting_s("m") == 0.0
    clock.now += 1.0
    assert pool.state("u0") is Circuit.HALF_OPEN
    assert "u0" in {u.name for u in pool.plan("m")}
    pool.taken(u0)  # the probe
    assert [u.name for u in pool.plan("m")] == ["u1"]  # no second probe while the first is out
    pool.failed(u0, "timeout")  # the probe failed: open again, a new cool-down
    assert pool.state("u0") is Circuit.OPEN
    clock.now += 30.0
    pool.taken(u0)
    pool.abandoned(u0)  # the client left: the slot is free again
    assert "u0" in {u.name for u in pool.plan("m")}
    pool.taken(u0)
    pool.succeeded(u0)
    assert pool.state("u0") is Circuit.CLOSED


def test_every_upstream_resting_gives_an_empty_plan_and_the_wait() -> None:
    """When all rest, the plan is empty and resting_s says when the first may be tried."""
    clock = Clock()
    pool = _pool(clock, 1, 1, failure_threshold=2, cooldown_s=20.0)
    pool.failed(pool.upstreams[0], "server_error")
    pool.failed(pool.upstreams[0], "server_error")
    clock.now += 5.0
    pool.failed(pool.upstreams[1], "rate_limited", retry_after_s=8.0)
    assert pool.plan("m") == []
    assert pool.resting_s("m") == pytest.approx(8.0)


def test_a_sole_upstream_is_always_tried() -> None:
    """With one upstream there is nothing to fail over to: it is tried whatever its circuit says."""
    clock = Clock()
    pool = _pool(clock, 1, failure_threshold=1)
    pool.failed(pool.upstreams[0], "unreachable", retry_after_s=100.0)
    assert pool.state("u0") is Circuit.OPEN
    assert [u.name for u in pool.plan("m")] == ["u0"]


def test_models_choose_the_upstreams_and_requests_without_one_go_to_the_first() -> None:
    """An upstream with a model list serves only those; a request naming no model goes to the first."""
    a = Upstream("a", "openai", "http://a/v1", None, models=frozenset({"gpt-5.1"}))
    b = Upstream("b", "openai", "http://b/v1", None)
    pool = Pool([a, b], clock=Clock(), rng=random.Random(1))
    assert [u.name for u in pool.plan("gpt-4.1-mini")] == ["b"]
    assert {u.name for u in pool.plan("gpt-5.1")} == {"a", "b"}
    assert [u.name for u in pool.plan(None)] == ["a"]
    sole = Pool([a], clock=Clock())
    assert [u.name for u in sole.plan(None)] == ["a"] and sole.plan("gpt-4.1-mini") == []


@pytest.mark.parametrize(("value", "value_ms", "expected"), [
    ("2", None, 2.0), ("1.5", None, 1.5), (None, "250", 0.25), ("7", "500", 0.5), ("soon", None, None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", None, None), ("-3", None, None), ("nan", None, None), (None, None, None),
])
def test_retry_after_is_read_in_seconds(value: str | None, value_ms: str | None, expected: float | None) -> None:
    """Retry-After in seconds, retry-after-ms first; anything else is ignored rather than guessed."""
    assert retry_after_s(value, value_ms) == expected


def test_the_single_upstream_url_is_the_default_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without upstreams, upstream_url and upstream_key make a pool of one named default."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    pool = pool_from_settings(load_settings(upstream_url="http://x.test/v1", upstream_key="sk-a"), clock=Clock())
    [u] = pool.upstreams
    assert (u.name, u.kind, u.url, u.key, u.models) == ("default", "openai", "http://x.test/v1", "sk-a", None)


def test_azure_serves_its_deployments_models_and_key_env_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """An azure upstream serves the models of its deployments; key_env names the variable with the key."""
    monkeypatch.setenv("AZ_KEY_FOR_TEST", "az-secret")
    settings = load_settings(upstreams=[
        {"name": "azure-eu", "kind": "azure", "url": "https://x.openai.azure.com", "key_env": "AZ_KEY_FOR_TEST",
         "deployments": {"gpt-5.1": "prod-51"}},
        {"name": "openai-a", "url": "https://api.openai.com/v1", "key": "sk-a", "weight": 3},
    ])
    pool = pool_from_settings(settings, clock=Clock())
    az, oa = pool.upstreams
    assert (az.key, az.models, az.deployment("gpt-5.1")) == ("az-secret", frozenset({"gpt-5.1"}), "prod-51")
    assert (oa.key, oa.weight, oa.models) == ("sk-a", 3, None)
    assert "az-secret" not in repr(settings)


@pytest.mark.parametrize(("upstreams", "message"), [
    ([{"name": "a", "kind": "bedrok", "url": "http://a"}],
     "upstream 'a': unknown kind 'bedrok' (one of: openai, azure, anthropic)"),
    ([{"name": "an", "kind": "anthropic", "url": "https://api.anthropic.com/v1", "deployments": {"m": "d"}}],
     "upstream 'an': deployments and api_version are for kind azure only"),
    ([{"name": "anthropic", "url": "http://a"}],
     "upstreams: the name 'anthropic' is the Anthropic routes' own upstream"),
    ([{"name": "default", "kind": "anthropic", "url": "http://a"}],
     "upstreams: the name 'default' is the OpenAI-API routes' own upstream"),
    ([{"name": "az", "kind": "azure", "url": "https://x.openai.azure.com", "key": "k",
       "deployments": {"gpt-5.1": "d"}, "models": ["gpt-5.1", "gpt-4.1"]}],
     "upstream 'az': no deployment for model 'gpt-4.1'"),
    ([{"name": "az", "kind": "azure", "url": "https://x.openai.azure.com", "key": "k"}],
     "upstream 'az': kind azure needs deployments"),
    ([{"name": "az", "kind": "azure", "url": "https://x.openai.azure.com", "deployments": {"m": "d"}}],
     "upstream 'az': kind azure needs key or key_env"),
    ([{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}], "the name 'a' is used twice"),
    ([{"name": "A b", "url": "http://a"}], "upstream 'A b': a name is 1-63 lower-case letters"),
    ([{"name": "a", "url": "ftp://a"}], "upstream 'a': url must be an http(s) URL"),
    ([{"name": "a", "url": "http://a", "deployment": {"m": "d"}}], "deployment: Extra inputs are not permitted"),
    ([{"name": "a", "url": "http://a", "models": []}], "upstream 'a': models is empty"),
    ([{"name": "a", "url": "http://a", "weight": 0}], "weight: Input should be greater than or equal to 1"),
])
def test_configuration_errors_say_what_is_wrong(upstreams: list[dict[str, object]], message: str) -> None:
    """Unknown kinds, missing deployments, duplicate names and the like fail at load with a clear message."""
    with pytest.raises(ConfigError) as caught:
        load_settings(upstreams=upstreams)
    assert message in caught.value.message


def test_each_api_has_its_own_pool() -> None:
    """Kind anthropic upstreams make the Anthropic routes' pool and are never in the OpenAI routes' one;
    without them the Anthropic pool is anthropic_upstream_url alone, named ``anthropic``, and without
    OpenAI-kind ones the OpenAI pool is upstream_url alone, named ``default``."""
    settings = load_settings(upstream_url="http://oa/v1", upstreams=[
        {"name": "oa", "url": "http://oa/v1", "key": "sk-oa"},
        {"name": "ant-1", "kind": "anthropic", "url": "http://an1/v1", "key": "sk-ant-1", "weight": 2,
         "models": ["claude-sonnet-4-5"]},
        {"name": "ant-2", "kind": "anthropic", "url": "http://an2/v1", "key": "sk-ant-2"}])
    assert [(u.name, u.kind) for u in pool_from_settings(settings, clock=Clock()).upstreams] == [("oa", "openai")]
    anthropic = anthropic_pool_from_settings(settings, clock=Clock())
    assert [(u.name, u.kind, u.key, u.weight) for u in anthropic.upstreams] == [
        ("ant-1", "anthropic", "sk-ant-1", 2), ("ant-2", "anthropic", "sk-ant-2", 1)]
    assert [u.name for u in anthropic.plan("claude-haiku-4-5")] == ["ant-2"]

    legacy = load_settings(anthropic_upstream_url="http://legacy/v1", anthropic_upstream_key="sk-ant-legacy")
    [one] = anthropic_pool_from_settings(legacy, clock=Clock()).upstreams
    assert (one.name, one.kind, one.url, one.key) == (ANTHROPIC_NAME, "anthropic", "http://legacy/v1", "sk-ant-legacy")
    only_anthropic = load_settings(upstream_url="http://oa/v1", upstreams=[
        {"name": "ant", "kind": "anthropic", "url": "http://an/v1"}])
    [default] = pool_from_settings(only_anthropic, clock=Clock()).upstreams
    assert (default.name, default.kind, default.url) == (DEFAULT_NAME, "openai", "http://oa/v1")


@pytest.mark.parametrize("old", [{"anthropic_upstream_key": "sk-ant-x"},
                                 {"anthropic_upstream_url": "https://api.anthropic.com/v1"}])
def test_the_old_anthropic_settings_beside_anthropic_upstreams_are_an_error(old: dict[str, str]) -> None:
    """anthropic_upstream_url/key with kind anthropic upstreams: one of them would be silently unused."""
    [name] = old
    with pytest.raises(ConfigError) as caught:
        load_settings(upstreams=[{"name": "ant", "kind": "anthropic", "url": "http://an/v1"}], **old)
    assert f"{name} is set, but upstreams has kind anthropic entries" in caught.value.message
    assert "sk-ant-x" not in caught.value.message


def test_an_unset_key_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """key_env naming an unset variable is refused when the pool is built, naming the variable."""
    monkeypatch.delenv("NOT_SET_FOR_TEST", raising=False)
    settings = load_settings(upstreams=[{"name": "a", "url": "http://a", "key_env": "NOT_SET_FOR_TEST"}])
    with pytest.raises(ConfigError, match="key_env names NOT_SET_FOR_TEST, which is unset"):
        pool_from_settings(settings, clock=Clock())


def test_the_cli_reports_a_bad_pool_in_one_line(tmp_path: Path) -> None:
    """A bad upstreams setting in the environment is one 'error:' line and exit 2, no traceback."""
    env = {"SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
           "SPENDGATE_UPSTREAMS": '[{"name": "a", "kind": "bedrok", "url": "http://a"}]'}
    done = CliRunner().invoke(main, ["proxy"], env=env)
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: invalid configuration") and "unknown kind 'bedrok'" in done.stderr
    assert "Traceback" not in done.output


def test_the_cli_reports_anthropic_settings_in_conflict_in_one_line(tmp_path: Path) -> None:
    """SPENDGATE_ANTHROPIC_UPSTREAM_KEY left set beside a kind anthropic upstream: one 'error:' line naming
    the variable, exit 2, the key never echoed."""
    env = {"SPENDGATE_DATA_DIR": str(tmp_path), "SPENDGATE_CONFIG": "",
           "SPENDGATE_ANTHROPIC_UPSTREAM_KEY": "sk-ant-do-not-echo",
           "SPENDGATE_UPSTREAMS": '[{"name": "ant", "kind": "anthropic", "url": "http://an/v1"}]'}
    done = CliRunner().invoke(main, ["proxy"], env=env)
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: invalid configuration") and "SPENDGATE_ANTHROPIC_UPSTREAM_KEY" in done.stderr
    assert "Traceback" not in done.output and "sk-ant-do-not-echo" not in done.output


class _Answer:
    """Stands in for an aiohttp response: a status and headers (release is a no-op)."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status, self.headers = status, headers or {}

    def release(self) -> None:
        pass


async def test_failover_skips_an_upstream_whose_probe_was_taken_meanwhile() -> None:
    """An upstream planned second but taken as another request's half-open probe while the first attempt
    ran is skipped: the first upstream's failure is the answer, never a second probe."""
    clock = Clock()
    a = Upstream("a", "openai", "http://a/v1", None, weight=1000)
    b = Upstream("b", "openai", "http://b/v1", None)
    pool = Pool([a, b], failure_threshold=1, cooldown_s=10.0, clock=clock, rng=random.Random(3))
    pool.failed(b, "server_error")
    clock.now += 10.0
    assert pool.state("b") is Circuit.HALF_OPEN
    sent: list[str] = []

    async def send(upstream: Upstream) -> Any:
        sent.append(upstream.name)
        pool.taken(b)  # another request takes b's probe meanwhile
        raise aiohttp.ServerDisconnectedError()

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await open_with_failover(pool, "m", send)
    assert sent == ["a"] and pool.failovers == {}


async def test_failover_moves_on_and_relays_the_last_answer() -> None:
    """A 503 then a 200: the 200 is the answer; a 429 then a 500: the last upstream's 500 is the answer."""
    clock = Clock()
    pool = Pool([Upstream("a", "openai", "http://a/v1", None, weight=1000),
                 Upstream("b", "openai", "http://b/v1", None)], clock=clock, rng=random.Random(3))
    answers = {"a": [_Answer(503), _Answer(429, {"retry-after": "5"})], "b": [_Answer(200), _Answer(500)]}

    async def send(upstream: Upstream) -> Any:
        return answers[upstream.name].pop(0)

    first = await open_with_failover(pool, "m", send)
    assert (first.upstream.name, first.response.status) == ("b", 200)
    last = await open_with_failover(pool, "m", send)
    assert (last.upstream.name, last.response.status) == ("b", 500)
    assert pool.failovers == {("a", "server_error"): 1, ("a", "rate_limited"): 1}
    assert pool.resting_until["a"] == clock.now + 5.0
    pool.failed(pool.upstreams[1], "server_error", retry_after_s=2.0)
    with pytest.raises(NoUpstream) as caught:  # both rest: nothing is sent, the wait is the shorter rest
        await open_with_failover(pool, "m", send)
    assert caught.value.retry_after_s == pytest.approx(2.0)
