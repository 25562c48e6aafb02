"""Exploration: a small random share of eligible turns runs on the next cheaper model. Pure: no I/O.

The one unbiased way to learn what a cheaper model does to a team's turns is to try it on turns picked
at random, not only on the turns that happen to arrive when a budget is nearly spent (breach-time
downgrades: end-of-month, crunch-time turns, a biased sample). A policy opts in with (docs/policy.md,
"Exploration")::

    exploration:
      share_pct: 5            # 0 < share <= 50: percent of eligible turns (integers or decimal strings)
      teams: [platform, web]  # required: the teams that take part
      max_input_tokens: 8000  # turns estimated under this many input tokens
      models: [gpt-5.1]       # optional: the requested models it applies to; default every model with a
                              # cheaper step in the policy's cascades

A request is *eligible* when its principal's team is listed, it carries a turn id, its estimate is under
``max_input_tokens``, its model (listed, if ``models`` is given) has a cheaper step, no routing rule
routed it and no budget is downgrading or pausing it. An eligible request's arm is a function of its turn
id alone: the keyed BLAKE2b hash of the turn id (keyed with the digest of the exploration block, so a
changed block draws afresh) read as a number in [0, 1); under the share it is ``explore`` (the next cheaper
model), else ``control``. Every request of a turn, on every proxy, lands in the same arm, and no state is
kept. The size limit is checked per request: a turn that grows past it sends its later requests to the
requested model with no arm, and the turn's outcome keeps the arm of its first request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from spendgate.domain.enforcement.scopes import MODEL_SEP, parse_model, parse_scope
from spendgate.domain.errors import ConfigError, shown
from spendgate.domain.events import ExperimentArm

MAX_SHARE_PCT = Decimal(50)
"""At most half the eligible turns explore: the rest are the control arm the comparison needs."""
MAX_TEAMS = 500
MAX_MODELS = 64
MAX_INPUT_TOKENS_LIMIT = 10_000_000
PPM = 1_000_000
"""Shares are kept as parts per million of eligible turns (whole numbers: no float on the request path)."""
_SPACE = 1 << 64
_KEYS = frozenset({"share_pct", "teams", "max_input_tokens", "models"})


@dataclass(frozen=True)
class Exploration:
    """A policy's validated exploration block; :meth:`arm` is the request-path draw (memory only)."""

    share_ppm: int
    teams: frozenset[str]
    max_input_tokens: int
    models: frozenset[str] | None = None
    """The requested models it applies to; None: every model with a cheaper step."""
    _salt: bytes = field(default=b"", compare=False, repr=False, init=False)
    _cut: int = field(default=0, compare=False, repr=False, init=False)
    _keyed: Any = field(default=None, compare=False, repr=False, init=False)
    """The keyed hash with the key already absorbed: each draw copies it (cheaper than keying afresh)."""

    def __post_init__(self) -> None:
        digest = hashlib.blake2b(_canonical(self.document()), digest_size=32).digest()
        object.__setattr__(self, "_salt", digest)
        object.__setattr__(self, "_cut", self.share_ppm * _SPACE // PPM)
        object.__setattr__(self, "_keyed", hashlib.blake2b(key=digest, digest_size=8))

    @property
    def share_pct(self) -> Decimal:
        return Decimal(self.share_ppm) / Decimal(PPM // 100)

    @property
    def salt(self) -> bytes:
        """The key of the draw: the digest of this block's document (a changed block draws afresh)."""
        return self._salt

    def applies(self, team: str, model: str, est_input_tokens: int, turn_id: str | None) -> bool:
        """Whether a request is in the experiment, cascade aside (the caller checks the cheaper step)."""
        return (turn_id is not None and est_input_tokens < self.max_input_tokens and team in self.teams
                and (self.models is None or model in self.models))

    def arm(self, turn_id: str) -> ExperimentArm:
        """The turn's arm: the same for every request of the turn, on every proxy."""
        return "explore" if self.position(turn_id) < self._cut else "control"

    def position(self, turn_id: str) -> int:
        """The turn's draw, a whole number in [0, 2**64) (the share cuts it at ``share * 2**64``)."""
        h = self._keyed.copy()
        h.update(turn_id.encode("utf-8", "surrogatepass"))
        return int.from_bytes(h.digest(), "big")

    def document(self) -> dict[str, Any]:
        """The block in the policy document's form (the share as an exact decimal string: no floats)."""
        doc: dict[str, Any] = {"share_pct": _pct_text(self.share_ppm), "teams": sorted(self.teams),
                               "max_input_tokens": self.max_input_tokens}
        if self.models is not None:
            doc["models"] = sorted(self.models)
        return doc


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _pct_text(ppm: int) -> str:
    text = f"{Decimal(ppm) / Decimal(PPM // 100):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_exploration(doc: object) -> Exploration | None:
    """Validate a policy document's ``exploration`` block (None: exploration off). Errors name the field."""
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise ConfigError("exploration: a mapping with share_pct, teams, max_input_tokens (and models)")
    unknown = sorted(str(k) for k in set(doc) - _KEYS)
    if unknown:
        raise ConfigError(f"exploration: unknown field {shown(unknown[0])} (fields: {', '.join(sorted(_KEYS))})")
    return Exploration(_share(doc.get("share_pct")), _teams(doc.get("teams")), _limit(doc.get("max_input_tokens")),
                       _models(doc.get("models")))


def _share(value: object) -> int:
    bad = ConfigError(f"exploration.share_pct: a percentage over 0 and at most {MAX_SHARE_PCT} (an integer or a "
                      f"decimal string such as \"2.5\"), not {shown(value)}")
    if isinstance(value, float):
        raise ConfigError(f"exploration.share_pct: write it as an integer or a decimal string (\"2.5\"), never a "
                          f"float, not {shown(value)}")
    if isinstance(value, bool) or not isinstance(value, int | str) or (isinstance(value, str) and len(value) > 16):
        raise bad
    try:
        pct = Decimal(str(value).strip())
    except InvalidOperation:
        raise bad from None
    if not pct.is_finite() or not Decimal(0) < pct <= MAX_SHARE_PCT:
        raise bad
    ppm = pct * (PPM // 100)
    if ppm != ppm.to_integral_value():
        raise ConfigError(f"exploration.share_pct: at most four decimal places, not {shown(value)}")
    return int(ppm)


def _teams(value: object) -> frozenset[str]:
    if value is None:
        raise ConfigError("exploration.teams: required: list the teams that take part (exploration is opt-in)")
    if isinstance(value, str) or not isinstance(value, Sequence) or not 1 <= len(value) <= MAX_TEAMS:
        raise ConfigError(f"exploration.teams: a list of 1 to {MAX_TEAMS} team names")
    teams = []
    for team in value:
        if not isinstance(team, str) or team != team.strip() or MODEL_SEP in team:
            raise ConfigError(f"exploration.teams: {shown(team)} is not a team name")
        try:
            parse_scope(f"team:{team}")
        except ConfigError:
            raise ConfigError(f"exploration.teams: {shown(team)} is not a team name") from None
        teams.append(team)
    if len(set(teams)) != len(teams):
        raise ConfigError("exploration.teams: names a team twice")
    return frozenset(teams)


def _limit(value: object) -> int:
    if value is None:
        raise ConfigError("exploration.max_input_tokens: required: only turns under this many input tokens take "
                          f"part (a whole number from 1 to {MAX_INPUT_TOKENS_LIMIT:,})")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INPUT_TOKENS_LIMIT:
        raise ConfigError(f"exploration.max_input_tokens: a whole number from 1 to {MAX_INPUT_TOKENS_LIMIT:,}, "
                          f"not {shown(value)}")
    return value


def _models(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not 1 <= len(value) <= MAX_MODELS:
        raise ConfigError(f"exploration.models: a list of 1 to {MAX_MODELS} requested models")
    models = []
    for m in value:
        try:
            models.append(parse_model(str(m)))
        except ConfigError as exc:
            raise ConfigError(f"exploration.models: {exc.message}") from None
    if len(set(models)) != len(models):
        raise ConfigError("exploration.models: names a model twice")
    return frozenset(models)


def stored_exploration(document: Mapping[str, Any]) -> Exploration | None:
    """The exploration block of a stored policy version's document."""
    return parse_exploration(document.get("exploration"))
