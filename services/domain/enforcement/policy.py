"""Typed enforcement policy: budgets, temporary raises, cascades and retry caps. Pure: no I/O.

The same shape serves the live configuration (rows of ``budgets`` and ``budget_raises`` plus
``Settings.enforcement``) and a proposal file for ``spendgate policy dry-run proposal.yaml``::

    budgets:
      - scope: team:platform   # key:<id>, developer:<name>, team:<name>, cost_center:<name>, org
        daily: "40"            # USD, strings or integers (never floats)
        weekly: "150"          # ISO week, Monday 00:00 in the budget's timezone
        monthly: "800"
        timezone: Europe/Berlin
        thresholds: [80, 95, 110]
        at_pause: cheapest     # or refuse (default), or step_down
        retry_cap: 3
        cascades: {gpt-5.1: [gpt-5.1-mini]}   # optional: this scope's own (the narrowest scope's wins)
      - scope: org
        model: gpt-5.1         # a per-model budget: only gpt-5.1's spend counts, only gpt-5.1 is held back
        monthly: "500"
    raises:                  # each counts from its start (from) until its end (until)
      - {scope: team:platform, by: "20", from: "2026-11-24T00:00:00Z", until: "2026-12-01T00:00:00Z",
         reason: release week}
    cascades: {gpt-5.1: [gpt-5.1-mini, gpt-4.1-mini]}   # optional, defaults from settings
    downgrade_max_input_tokens: 10000                   # optional
    retry_cap: 3                                        # optional default for scopes without one
    routing_rules:                                      # optional, always on (see routing.py)
      - {name: small-daytime, scope: team:platform, max_input_tokens: 8000, hours: "09:00-17:00",
         model: gpt-5.1-mini}
    exploration: {share_pct: 5, teams: [platform], max_input_tokens: 8000}   # optional (see exploration.py)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from spendgate.domain.enforcement.balances import BalanceKey
from spendgate.domain.enforcement.exploration import Exploration, parse_exploration, stored_exploration
from spendgate.domain.enforcement.routing import MAX_INPUT_TOKENS_LIMIT, RoutingTable, parse_rules, stored_rules
from spendgate.domain.enforcement.scopes import Principal, model_scope, parse_model, parse_scope, split_scope
from spendgate.domain.enforcement.settings import EnforcementSettings
from spendgate.domain.errors import ConfigError, shown
from spendgate.domain.money import usd_to_micros
from spendgate.domain.periods import Period, PeriodKind, period_containing, zone
from spendgate.domain.pricing import PriceTable

AtPause = Literal["refuse", "cheapest", "step_down"]
AT_PAUSE: tuple[AtPause, ...] = ("refuse", "cheapest", "step_down")
"""At the pause stage: refuse; send every request to the cascade's last model; or send every request,
large turns included, one step down the cascade (refused when the model has nowhere cheaper to go)."""
MAX_CASCADES = 64
"""Cascades one budget may carry (a policy file or API body is operator input: keep it bounded)."""
MAX_CASCADE_STEPS = 8
"""Cheaper models one cascade may list."""
MAX_THRESHOLD_PCT = 1_000
"""The highest stage threshold, in percent of a budget (a pause at ten times the budget is no budget)."""
MAX_RETRY_CAP = 1_000
"""The highest retry cap (retries of one tool call per session)."""
MAX_RAISE_REASON_CHARS = 500
MAX_ERROR_LINES = 10
"""Problems one error message lists (the rest are counted)."""
Cascades = tuple[tuple[str, tuple[str, ...]], ...]
"""A budget's own cascades, ``((model, (cheaper, ...)), ...)``: hashable, like the budget."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Alert, downgrade and pause thresholds in whole percent of a budget."""

    alert_pct: int = 80
    downgrade_pct: int = 95
    pause_pct: int = 110

    @classmethod
    def of(cls, values: Iterable[int]) -> Thresholds:
        v = list(values)
        if (len(v) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                or not 0 < v[0] <= v[1] <= v[2] <= MAX_THRESHOLD_PCT):
            raise ConfigError("thresholds must be three rising percentages (alert, downgrade, pause) up to "
                              f"{MAX_THRESHOLD_PCT}, not {shown(v)}")
        return cls(v[0], v[1], v[2])

    def as_list(self) -> list[int]:
        return [self.alert_pct, self.downgrade_pct, self.pause_pct]


@dataclass(frozen=True, slots=True)
class Budget:
    """One scope's dollar budgets per day, week and month, in its own timezone.

    ``scope`` is the budget's whole scope: for a per-model budget ``<scope>|model:<model>``
    (:func:`~spendgate.domain.enforcement.scopes.model_scope`), whose balances count that model's spend only.
    """

    scope: str
    daily_micros: int | None = None
    monthly_micros: int | None = None
    timezone: str = "UTC"
    thresholds: Thresholds = field(default_factory=Thresholds)
    at_pause: AtPause = "refuse"
    retry_cap: int | None = None
    weekly_micros: int | None = None
    cascades: Cascades | None = None
    """This scope's own cascades; None: the broader scopes' or the settings' (``Policy.chain``)."""

    def limit_micros(self, kind: PeriodKind) -> int | None:
        if kind is PeriodKind.DAY:
            return self.daily_micros
        return self.weekly_micros if kind is PeriodKind.WEEK else self.monthly_micros

    @property
    def model(self) -> str | None:
        """The model a per-model budget counts; None for a budget on all of the scope's spend."""
        return split_scope(self.scope)[1]

    @property
    def base_scope(self) -> str:
        """The scope without its model (``org`` for ``org|model:gpt-5.1``)."""
        return split_scope(self.scope)[0]

    def cascade_dict(self) -> dict[str, list[str]] | None:
        return None if self.cascades is None else {m: list(c) for m, c in self.cascades}


@dataclass(frozen=True, slots=True)
class BudgetRaise:
    """A temporary addition to every budget of a scope, counting from when it was made until ``until``."""

    scope: str
    amount_micros: int
    until: datetime
    reason: str
    raise_id: str = ""
    created_at: datetime | None = field(default=None, compare=False)
    """When it was made, its start: the database's time for a stored raise, ``from`` for a proposal's.
    None (a raise built by hand) counts as made before any time asked about. Not part of a raise's
    identity, so a stored raise equals the same raise in a proposal."""


@overload
def effective_budget_micros(base_micros: int, raises: Iterable[BudgetRaise], scope: str, at: datetime, *,
                            as_of: bool = False) -> int: ...


@overload
def effective_budget_micros(base_micros: None, raises: Iterable[BudgetRaise], scope: str, at: datetime, *,
                            as_of: bool = False) -> None: ...


def effective_budget_micros(base_micros: int | None, raises: Iterable[BudgetRaise], scope: str, at: datetime, *,
                            as_of: bool = False) -> int | None:
    """A scope's budget for one period at ``at``: the base amount plus every raise of the scope active
    at ``at`` (``at < until``). None when the scope has no budget for that period (raises add to a
    budget, they never make one).

    ``as_of=True`` is the budget as it was known at ``at`` (a forecast audit of a past day): raises
    granted after ``at`` are left out too. A raise whose ``created_at`` is unknown counts as granted.

    The one rule for "budget plus raises": the proxy's decision, the ledger's crossings, the dry-run
    and the forecaster all call it. The policy always asks ``as_of`` (a raise counts from its start,
    which for a live proxy is always past, and which keeps a raise made today out of last month's
    replay); the forecaster too, whose runs and audits may be set in the past.
    """
    if base_micros is None:
        return None
    return base_micros + sum(
        r.amount_micros for r in raises
        if r.scope == scope and at < r.until and not (as_of and r.created_at is not None and r.created_at > at)
    )


@dataclass(frozen=True)
class Policy:
    """Everything the decision needs besides balances; immutable, swapped whole on a change."""

    budgets: Mapping[str, Budget] = field(default_factory=dict)
    raises: tuple[BudgetRaise, ...] = ()
    cascades: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    downgrade_max_input_tokens: int = 10_000
    retry_cap: int = 3
    routing: RoutingTable = field(default_factory=RoutingTable)
    """Always-on routing rules (:mod:`.routing`), evaluated before the budget stages."""
    exploration: Exploration | None = None
    """Opt-in exploration (:mod:`.exploration`): a random share of eligible turns on the next cheaper model."""
    version: str | None = field(default=None, compare=False)
    """The id of the stored policy version this policy enforces (None before the first ``policy apply``).
    Not part of a policy's identity: a proposal equals the live policy it became."""
    _periods: dict[tuple[PeriodKind, str], Period] = field(default_factory=dict, compare=False, repr=False,
                                                           init=False)
    """Current period per (kind, timezone): a cache, valid while ``starts_at <= now < ends_at``."""
    _raises_of: dict[str, tuple[BudgetRaise, ...]] = field(default_factory=dict, compare=False, repr=False,
                                                           init=False)
    _keys: dict[tuple[str, ...], tuple[datetime, datetime, list[tuple[BalanceKey, datetime]]]] = field(
        default_factory=dict, compare=False, repr=False, init=False)
    """``decision.balance_keys`` per set of scopes: a cache, valid between the latest start and the earliest
    end of the periods it holds."""
    """``raises`` by scope (filled on construction): a decision looks at its own scopes' raises only. Not
    an init field, so ``replace`` (a reload) builds its own instead of adding the raises to the old one's."""
    _models: set[str] = field(default_factory=set, compare=False, repr=False, init=False)
    """Models that some per-model budget counts: only their requests look for per-model budgets."""
    _own_cascades: list[bool] = field(default_factory=list, compare=False, repr=False, init=False)
    """``[True]`` when some budget has cascades of its own (then a chain depends on the request's scopes)."""
    _chains: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False, init=False)
    """The settings' chain per model (:meth:`chain_of` without budgets' own cascades): a cache."""

    def __post_init__(self) -> None:
        for r in self.raises:
            self._raises_of[r.scope] = (*self._raises_of.get(r.scope, ()), r)
        self._models.update(m for b in self.budgets.values() if (m := b.model) is not None)
        self._own_cascades.append(any(b.cascades is not None for b in self.budgets.values()))

    def budget_scopes(self, scopes: Iterable[str], model: str) -> list[str]:
        """The budgeted scopes a request for ``model`` falls in, narrowest first: each scope's per-model
        budget of ``model`` (if any) before its budget on all models (if any)."""
        per_model = model in self._models
        out = []
        for scope in scopes:
            if per_model and (own := model_scope(scope, model)) in self.budgets:
                out.append(own)
            if scope in self.budgets:
                out.append(scope)
        return out

    @classmethod
    def from_settings(
        cls, settings: EnforcementSettings, budgets: Iterable[Budget] = (), raises: Iterable[BudgetRaise] = ()
    ) -> Policy:
        return cls(
            budgets={b.scope: b for b in budgets},
            raises=tuple(raises),
            cascades={m: tuple(c) for m, c in settings.cascades.items()},
            downgrade_max_input_tokens=settings.downgrade_max_input_tokens,
            retry_cap=settings.retry_cap,
        )

    def with_budgets(self, budgets: Iterable[Budget], raises: Iterable[BudgetRaise]) -> Policy:
        return replace(self, budgets={b.scope: b for b in budgets}, raises=tuple(raises))

    def with_version(self, version: str | None, routing: RoutingTable, exploration: Exploration | None, *,
                     downgrade_max_input_tokens: int | None = None, retry_cap: int | None = None) -> Policy:
        """This policy with another version's id, routing rules and exploration, and its downgrade size limit
        and policy-wide retry cap where given (None keeps these). ``exploration`` has no default: a caller
        that forgot it would silently switch exploration off."""
        return replace(
            self, version=version, routing=routing, exploration=exploration,
            downgrade_max_input_tokens=self.downgrade_max_input_tokens if downgrade_max_input_tokens is None
            else downgrade_max_input_tokens,
            retry_cap=self.retry_cap if retry_cap is None else retry_cap)

    def under_version(self, version: str, document: Mapping[str, Any]) -> Policy:
        """This policy as the stored version ``document`` sets it (a proxy's reload, the admin's live policy):
        the version's id, routing rules, exploration, downgrade size limit and policy-wide retry cap. A
        document without the last two (none is written so) keeps these. A ConfigError when it cannot be read."""
        return self.with_version(version, stored_rules(document), stored_exploration(document),
                                 downgrade_max_input_tokens=_stored_int(document, "downgrade_max_input_tokens",
                                                                        1, MAX_INPUT_TOKENS_LIMIT),
                                 retry_cap=_stored_int(document, "retry_cap", 0, MAX_RETRY_CAP))

    def period(self, kind: PeriodKind, timezone: str, now: datetime) -> Period:
        """The period of ``kind`` containing ``now`` in ``timezone`` (cached: one datetime compare)."""
        cached = self._periods.get((kind, timezone))
        if cached is not None and cached.starts_at <= now < cached.ends_at:
            return cached
        period = self._periods[(kind, timezone)] = period_containing(kind, now, timezone)
        return period

    def effective_micros(self, budget: Budget, kind: PeriodKind, now: datetime) -> int | None:
        """The period's budget plus every raise of the scope running at ``now``: made by then, not ended."""
        own = self._raises_of.get(budget.scope)
        base = budget.limit_micros(kind)
        return base if own is None else effective_budget_micros(base, own, budget.scope, now, as_of=True)

    def next_model(self, model: str, scopes: Iterable[str] = ()) -> str | None:
        """One step down ``model``'s cascade, or None when it has nowhere cheaper to go."""
        chain = self.chain(model, scopes)
        return chain[1] if len(chain) > 1 else None

    def cheapest_model(self, model: str, scopes: Iterable[str] = ()) -> str | None:
        """The last model of ``model``'s cascade, or None when it has no cascade."""
        chain = self.chain(model, scopes)
        return chain[-1] if len(chain) > 1 else None

    def chain(self, model: str, scopes: Iterable[str] = ()) -> tuple[str, ...]:
        """``model`` and the cheaper models below it: from the narrowest of ``scopes`` (a request's, narrowest
        first) whose budget has its own cascade for ``model``, else from the settings' cascades."""
        for scope in self.budget_scopes(scopes, model):
            own = self.budgets[scope].cascades
            if own is not None and len(found := _chain_in(dict(own), model)) > 1:
                return found
        return _chain_in(self.cascades, model)

    def chain_of(self, model: str, principal: Principal) -> tuple[str, ...]:
        """:meth:`chain` for a principal's request, without building its scopes when no budget has cascades
        of its own (the routing rules ask it on the request path)."""
        if self._own_cascades[0]:
            return self.chain(model, principal.scopes())
        found = self._chains.get(model)
        if found is None:
            found = self._chains[model] = _chain_in(self.cascades, model)
        return found

    def retry_cap_for(self, scopes: Iterable[str]) -> int:
        """The tightest retry cap among the scopes' budgets, else the default."""
        caps = [b.retry_cap for s in scopes if (b := self.budgets.get(s)) and b.retry_cap is not None]
        return min(caps, default=self.retry_cap)

    def check_prices(self, table: PriceTable, *, bedrock_models: Collection[str] = ()) -> None:
        """Start-up check: every cascade model must be priced and served by the provider of the model it
        steps down from (a ConfigError now, not at 95 %); the budgets' own cascades too (a proposal's,
        before a dry-run or apply)."""
        check_cascades(self.cascades, table, what="enforcement.cascades", bedrock_models=bedrock_models)
        for scope in sorted(self.budgets):
            own = self.budgets[scope].cascade_dict()
            if own:
                check_cascades(own, table, what=f"the cascades of {scope}", bedrock_models=bedrock_models)
        self.check_routing(table, bedrock_models=bedrock_models)
        self.check_exploration()

    def unmetered_budgets(self, table: PriceTable, *, bedrock_models: Collection[str] = ()) -> list[str]:
        """Per-model budgets on a model nothing can price (no table entry, no fallback price): requests for it
        are refused as an unknown model, so the budget never counts a dollar (a mistyped model name, most
        often). Not an error: a model may be priced later, or by a fallback set in another process."""
        if table.fallback is not None:
            return []
        return [scope for scope, b in sorted(self.budgets.items())
                if b.model is not None and not table.knows(b.model) and b.model not in bedrock_models]

    def check_exploration(self) -> None:
        """Every model exploration names has a cheaper step in some cascade (else it could never explore)."""
        if self.exploration is None or self.exploration.models is None:
            return
        for model in sorted(self.exploration.models):
            if len(self.chain(model)) < 2 and not any(
                    len(_chain_in(dict(b.cascades), model)) > 1 for b in self.budgets.values() if b.cascades):
                raise ConfigError(f"exploration.models: {model} has no cheaper model in the cascades, so no turn "
                                  "of it would be explored; add a cascade for it or leave it out")

    def check_routing(self, table: PriceTable, *, bedrock_models: Collection[str] = ()) -> None:
        """Every routing rule's models are priced and served by one provider, and a rule without
        ``models`` routes to a model some cascade steps down to (else it could never apply)."""
        reachable = {m for chain in self.cascades.values() for m in chain}
        reachable.update(m for b in self.budgets.values() for _, chain in (b.cascades or ()) for m in chain)
        for rule in self.routing.rules:
            what = f"routing rule {rule.name}"
            if rule.models is None:
                table.require([rule.model], what=what)
                if rule.model not in reachable:
                    raise ConfigError(f"{what}: no cascade steps down to {rule.model}, so no request would be "
                                      "routed; list the requested models it applies to under models:")
            else:
                check_cascades({m: [rule.model] for m in rule.models}, table, what=what,
                               bedrock_models=bedrock_models)


def check_cascades(cascades: Mapping[str, Sequence[str]], table: PriceTable, *, what: str,
                   bedrock_models: Collection[str] = ()) -> None:
    """Every model of ``cascades`` is priced, and every cascade stays with one provider (the settings' at
    start-up, a budget's own when it is set).

    A downgraded request stays on its route and goes to the provider of the model it names: on the
    Anthropic Messages routes every step must be a Claude model; on the OpenAI routes, a model of
    ``bedrock_models`` goes to Bedrock and any other to the OpenAI upstream, so a cascade stays within
    Bedrock's models or within OpenAI's."""
    models = sorted({m for src, chain in cascades.items() for m in (src, *chain)})
    table.require(models, what=what)

    def provider(model: str, *, openai_route: bool) -> str:
        if openai_route and model in bedrock_models:
            return "Bedrock"
        return "Anthropic" if model.startswith("claude-") else "OpenAI"

    for src, chain in cascades.items():
        openai_route = src in bedrock_models or not src.startswith("claude-")
        own = provider(src, openai_route=openai_route)
        for model in chain:
            if (other := provider(model, openai_route=openai_route)) != own:
                hint = f"; add {model} to bedrock.models" if own == "Bedrock" and other == "Anthropic" else ""
                raise ConfigError(
                    f"{what}: the cascade of {src} ({own}) steps to {model} ({other}): a downgraded request "
                    f"goes to the requested model's provider, so a cascade must stay with one provider{hint}")


def _chain_in(cascades: Mapping[str, Sequence[str]], model: str) -> tuple[str, ...]:
    if model in cascades:
        return (model, *cascades[model])
    for chain in cascades.values():  # a cascade member steps down its own cascade
        if model in chain:
            return tuple(chain[list(chain).index(model):])
    return (model,)


def _written_dollars(v: Any) -> Any:
    """A document's dollar amount as written: a float or a boolean is refused before pydantic coerces it."""
    if isinstance(v, float | bool):
        raise ValueError('write dollar amounts as strings ("40.50") or integers, '
                         f'never {"true or false" if isinstance(v, bool) else "floats"}')
    return v


class _BudgetDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str
    model: str | None = None
    daily: str | int | None = None
    weekly: str | int | None = None
    monthly: str | int | None = None
    timezone: str = "UTC"
    thresholds: list[StrictInt] | None = None
    """Default: ``Settings.enforcement.thresholds_pct``."""
    at_pause: AtPause = "refuse"
    retry_cap: int | None = None
    cascades: dict[str, list[str]] | None = None

    @field_validator("daily", "weekly", "monthly", mode="before")
    @classmethod
    def _no_float(cls, v: Any) -> Any:
        return _written_dollars(v)

    @field_validator("daily", "weekly", "monthly")
    @classmethod
    def _dollars(cls, v: str | int | None) -> str | int | None:
        if v is not None:
            usd_to_micros(v)  # a ValueError naming the amount, cut short: pydantic names the field
        return v


class _RaiseDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str
    by: str | int
    starts: datetime = Field(alias="from")
    """When the raise starts counting: a dry-run replays it from then on (``policy show`` writes a live
    raise's creation time). Required, so a raise made today cannot lift last month's replay by default."""
    until: datetime
    reason: str = Field(min_length=1, max_length=MAX_RAISE_REASON_CHARS)

    @field_validator("by", mode="before")
    @classmethod
    def _positive_dollars(cls, v: Any) -> Any:
        if isinstance(_written_dollars(v), str | int) and usd_to_micros(v) <= 0:
            raise ValueError("a raise adds a positive amount")
        return v


class _PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budgets: list[_BudgetDoc] = []
    raises: list[_RaiseDoc] = []
    cascades: dict[str, list[str]] | None = None
    """Checked by :func:`parse_cascades`, as a budget's own are."""
    downgrade_max_input_tokens: StrictInt | None = Field(None, ge=1, le=MAX_INPUT_TOKENS_LIMIT)
    retry_cap: StrictInt | None = Field(None, ge=0, le=MAX_RETRY_CAP)
    routing_rules: list[Any] | None = None
    """Checked by :func:`~spendgate.domain.enforcement.routing.parse_rules` (errors name the rule)."""
    exploration: Any = None
    """Checked by :func:`~spendgate.domain.enforcement.exploration.parse_exploration` (errors name the field)."""


def budget_of(
    scope: str, *, daily_micros: int | None, monthly_micros: int | None, timezone: str = "UTC",
    thresholds: Iterable[int] = (80, 95, 110), at_pause: str = "refuse", retry_cap: int | None = None,
    weekly_micros: int | None = None, model: str | None = None,
    cascades: Mapping[str, Sequence[str]] | None = None,
) -> Budget:
    """A validated :class:`Budget` (scope form, model, timezone, thresholds, positive amounts, cascades).

    ``model``: restrict the budget to that model's spend (or write the scope as ``<scope>|model:<model>``).
    """
    zone(timezone)
    amounts = (daily_micros, weekly_micros, monthly_micros)
    if all(v is None for v in amounts):
        raise ConfigError(f"budget for {scope} needs a daily, weekly or monthly amount")
    if any(v is not None and v <= 0 for v in amounts):
        raise ConfigError(f"budget amounts for {scope} must be positive")
    whole = parse_scope(scope)
    if model is not None:
        if split_scope(whole)[1] is not None:
            raise ConfigError(f"budget for {scope}: give the model once, in the scope or as model, not both")
        whole = model_scope(whole, parse_model(model))
    if at_pause not in AT_PAUSE:
        raise ConfigError(f"at_pause must be one of {', '.join(AT_PAUSE)}, not {shown(at_pause)}")
    if retry_cap is not None and (isinstance(retry_cap, bool) or not 0 <= retry_cap <= MAX_RETRY_CAP):
        raise ConfigError(f"retry_cap: a whole number from 0 to {MAX_RETRY_CAP}, not {shown(retry_cap)}")
    pause: AtPause = "cheapest" if at_pause == "cheapest" else "step_down" if at_pause == "step_down" else "refuse"
    return Budget(whole, daily_micros, monthly_micros, timezone, Thresholds.of(thresholds), pause, retry_cap,
                  weekly_micros, None if cascades is None else parse_cascades(cascades, what=f"budget for {whole}"))


def parse_cascades(cascades: Mapping[str, Sequence[str]], *, what: str) -> Cascades:
    """A budget's own cascades, validated: model ids, at most :data:`MAX_CASCADES` cascades of at most
    :data:`MAX_CASCADE_STEPS` cheaper models, none listing a model twice or stepping down to itself."""
    if len(cascades) > MAX_CASCADES:
        raise ConfigError(f"{what}: at most {MAX_CASCADES} cascades, not {len(cascades)}")
    out = []
    for src, chain in cascades.items():
        if isinstance(chain, str) or not isinstance(chain, Sequence):
            raise ConfigError(f"{what}: the cascade of {src} must be a list of cheaper models")
        models = [parse_model(str(m)) for m in (src, *chain)]
        if not 1 <= len(chain) <= MAX_CASCADE_STEPS:
            raise ConfigError(f"{what}: the cascade of {src} lists 1 to {MAX_CASCADE_STEPS} cheaper models")
        if len(set(models)) != len(models):
            raise ConfigError(f"{what}: the cascade of {src} names a model twice")
        out.append((models[0], tuple(models[1:])))
    return tuple(sorted(out))


def _stored_int(document: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"stored policy version: {name} is {shown(value)}, not a whole number from {low} to {high:,}")
    return value


def _loc_part(part: str) -> str:
    """A field name as an error names it (an unknown key may be anyone's megabyte)."""
    return part if len(part) <= 64 else shown(part)


def policy_from_document(doc: Mapping[str, Any], defaults: EnforcementSettings) -> Policy:
    """Build a policy from a parsed YAML/JSON document; unset parts come from ``defaults``."""
    try:
        parsed = _PolicyDoc.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()
        lines = [f"{'.'.join(_loc_part(str(p)) for p in e['loc'])}: {e['msg']}" for e in errors[:MAX_ERROR_LINES]]
        more = [f"and {len(errors) - MAX_ERROR_LINES} more"] if len(errors) > MAX_ERROR_LINES else []
        raise ConfigError("invalid policy:\n  " + "\n  ".join([*lines, *more])) from exc
    budgets = [
        budget_of(b.scope, daily_micros=None if b.daily is None else usd_to_micros(b.daily),
                  weekly_micros=None if b.weekly is None else usd_to_micros(b.weekly),
                  monthly_micros=None if b.monthly is None else usd_to_micros(b.monthly),
                  timezone=b.timezone, thresholds=b.thresholds or defaults.thresholds_pct, at_pause=b.at_pause,
                  retry_cap=b.retry_cap, model=b.model, cascades=b.cascades)
        for b in parsed.budgets
    ]
    seen: set[str] = set()
    for b in budgets:
        if b.scope in seen:
            raise ConfigError(f"invalid policy: two budgets for {b.scope}")
        seen.add(b.scope)
    for r in parsed.raises:
        if r.until.tzinfo is None or r.starts.tzinfo is None:
            raise ConfigError(f"raise for {r.scope}: from and until must carry a timezone (e.g. 2026-12-01T00:00Z)")
        if r.starts >= r.until:
            raise ConfigError(f"raise for {r.scope}: from must come before until")
    raises = [BudgetRaise(parse_scope(r.scope), usd_to_micros(r.by), r.until, r.reason, created_at=r.starts)
              for r in parsed.raises]
    base = Policy.from_settings(defaults, budgets, raises)
    zones = {b.scope: b.timezone for b in budgets}
    rules = parse_rules(parsed.routing_rules, timezone_of=lambda scope: zones.get(scope, "UTC"))
    return replace(
        base,
        cascades=base.cascades if parsed.cascades is None else dict(parse_cascades(parsed.cascades, what="cascades")),
        downgrade_max_input_tokens=parsed.downgrade_max_input_tokens or base.downgrade_max_input_tokens,
        retry_cap=base.retry_cap if parsed.retry_cap is None else parsed.retry_cap,
        routing=RoutingTable(rules),
        exploration=parse_exploration(parsed.exploration),
    )
