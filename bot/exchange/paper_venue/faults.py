"""Faults the paper venue injects on purpose: which, where and how often.

The grammar (also in `levbot paper-exchange --help`)::

    SPEC  := ITEM ("," ITEM)*
    ITEM  := WHERE ":" [KIND "="] RATE
    WHERE := an endpoint name (see ENDPOINTS), "reads", "writes" or "all"
    KIND  := a FaultKind value; without it, any kind that fits the endpoint
    RATE  := a probability, 0 to 1

`all:0.3` breaks 30% of every request with a kind drawn at random;
`order:lost=0.1,account:truncated=0.2` loses one order reply in ten and truncates one
futures-account reply in five. Later items for the same endpoint add to earlier ones
(their rates are summed, at most 1). Draws come from one seeded RNG, so a run with the
same seed and the same requests breaks the same ones.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    LATENCY = "latency"  # answer, late
    TIMEOUT = "timeout"  # hold the connection past the client's timeout, then close it
    SERVER_JSON = "500"  # 5xx with a JSON body
    SERVER_HTML = "html"  # 5xx with an HTML page (a proxy in front of the venue)
    RATE_LIMIT = "429"  # with Retry-After
    BANNED = "418"  # IP banned for a while
    TIMESTAMP = "timestamp"  # -1021, the request fell outside recvWindow
    UNKNOWN = "unknown"  # -1000, an unknown error: a write may or may not have happened
    TRUNCATED = "truncated"  # 200 with half a JSON document
    EMPTY = "empty"  # 200 with {} or []
    MISSING = "missing"  # 200 with one field left out somewhere
    LOST = "lost"  # writes: applied, then the reply is dropped or answered 502


READ_ENDPOINTS = (
    "time",
    "markets",
    "pooling",
    "account",
    "positions",
    "brackets",
    "order_query",
    "spot",
    "transfer_history",
    "algo_query",
    "algo_open",
)
WRITE_ENDPOINTS = ("order", "margin", "transfer", "algo_order", "algo_cancel")
ENDPOINTS = READ_ENDPOINTS + WRITE_ENDPOINTS
GROUPS: dict[str, tuple[str, ...]] = {
    "all": ENDPOINTS,
    "reads": READ_ENDPOINTS,
    "writes": WRITE_ENDPOINTS,
}
# A read has no reply to lose: the client simply sees a failed request.
READ_KINDS = tuple(kind for kind in FaultKind if kind is not FaultKind.LOST)
WRITE_KINDS = tuple(FaultKind)


class FaultSpecError(ValueError):
    """A --faults SPEC that does not parse; the message names the bad item."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    kind: FaultKind | None  # None: any kind that fits the endpoint
    rate: float


def kinds_for(endpoint: str) -> tuple[FaultKind, ...]:
    return WRITE_KINDS if endpoint in WRITE_ENDPOINTS else READ_KINDS


def parse_spec(spec: str) -> dict[str, tuple[FaultRule, ...]]:
    """Endpoint -> its rules. An empty SPEC means no faults."""
    rules: dict[str, list[FaultRule]] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        where, colon, what = item.partition(":")
        if not colon:
            raise FaultSpecError(f"{item!r}: use WHERE:[KIND=]RATE, e.g. all:0.3")
        where = where.strip()
        targets = GROUPS.get(where, (where,) if where in ENDPOINTS else ())
        if not targets:
            known = ", ".join((*GROUPS, *ENDPOINTS))
            raise FaultSpecError(f"{item!r}: unknown endpoint {where!r}; use one of {known}")
        kind_text, equals, rate_text = what.rpartition("=")
        kind: FaultKind | None = None
        if equals:
            try:
                kind = FaultKind(kind_text.strip())
            except ValueError:
                known = ", ".join(k.value for k in FaultKind)
                raise FaultSpecError(
                    f"{item!r}: unknown fault {kind_text!r}; use one of {known}"
                ) from None
        try:
            rate = float(rate_text)
        except ValueError:
            raise FaultSpecError(f"{item!r}: rate {rate_text!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise FaultSpecError(f"{item!r}: rate must be between 0 and 1")
        for endpoint in targets:
            if kind is None or kind in kinds_for(endpoint):
                rules.setdefault(endpoint, []).append(FaultRule(kind, rate))
    return {endpoint: tuple(found) for endpoint, found in rules.items()}


@dataclass
class FaultPlan:
    """Decides, request by request, whether and how to misbehave; counts what it did."""

    spec: str = ""
    seed: int | None = None
    injected: Counter[str] = field(default_factory=Counter)
    _rules: dict[str, tuple[FaultRule, ...]] = field(init=False)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rules = parse_spec(self.spec)
        self.rng = random.Random(self.seed)  # noqa: S311 - chaos, not cryptography

    def replace(self, spec: str) -> None:
        """New rules from now on (the RNG and the counts carry on)."""
        self._rules = parse_spec(spec)
        self.spec = spec

    def draw(self, endpoint: str) -> FaultKind | None:
        """The fault for this request, or None to answer it properly."""
        rules = self._rules.get(endpoint)
        if not rules:
            return None
        roll = self.rng.random()
        for rule in rules:
            if roll < rule.rate:
                kind = rule.kind or self.rng.choice(kinds_for(endpoint))
                self.injected[kind.value] += 1
                return kind
            roll -= rule.rate
        return None
