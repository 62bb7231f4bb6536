"""Plain typed replies of the worker API, converted from the protobuf messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone

from google.protobuf.timestamp_pb2 import Timestamp

from ._proto.quota.v1 import quota_pb2 as pb


class Kind(str, enum.Enum):
    """What a generation produces; each kind has its own cost. Plain strings work too."""

    CHARACTER_IMAGE = "character_image"
    LOCATION_IMAGE = "location_image"
    FIRST_FRAME = "first_frame"
    VIDEO = "video"

    def __str__(self) -> str:
        return self.value


class HoldState(str, enum.Enum):
    """Lifecycle of a hold: held, then exactly one of settled, released or expired."""

    UNSPECIFIED = "unspecified"
    HELD = "held"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"

    def __str__(self) -> str:
        return self.value


class ReleaseReason(str, enum.Enum):
    """Why a generation did not succeed; every reason returns the whole hold."""

    FAILED = "failed"
    CONTENT_FILTERED = "content_filtered"
    SYSTEM_ERROR = "system_error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class DenialReason(str, enum.Enum):
    """Why Reserve (or Quote) refuses a generation."""

    UNSPECIFIED = "unspecified"
    MODEL_NOT_IN_PLAN = "model_not_in_plan"
    VIDEO_TOO_LONG = "video_too_long"
    TOO_MANY_HOLDS = "too_many_holds"
    INSUFFICIENT_FUNDS = "insufficient_funds"

    def __str__(self) -> str:
        return self.value


_KIND_TO_PB = {
    Kind.CHARACTER_IMAGE: pb.GENERATION_KIND_CHARACTER_IMAGE,
    Kind.LOCATION_IMAGE: pb.GENERATION_KIND_LOCATION_IMAGE,
    Kind.FIRST_FRAME: pb.GENERATION_KIND_FIRST_FRAME,
    Kind.VIDEO: pb.GENERATION_KIND_VIDEO,
}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATE_FROM_PB = {
    pb.HOLD_STATE_HELD: HoldState.HELD,
    pb.HOLD_STATE_SETTLED: HoldState.SETTLED,
    pb.HOLD_STATE_RELEASED: HoldState.RELEASED,
    pb.HOLD_STATE_EXPIRED: HoldState.EXPIRED,
}
_REASON_TO_PB = {
    ReleaseReason.FAILED: pb.RELEASE_REASON_FAILED,
    ReleaseReason.CONTENT_FILTERED: pb.RELEASE_REASON_CONTENT_FILTERED,
    ReleaseReason.SYSTEM_ERROR: pb.RELEASE_REASON_SYSTEM_ERROR,
    ReleaseReason.CANCELLED: pb.RELEASE_REASON_CANCELLED,
}
_DENIAL_FROM_PB = {
    pb.DENIAL_REASON_MODEL_NOT_IN_PLAN: DenialReason.MODEL_NOT_IN_PLAN,
    pb.DENIAL_REASON_VIDEO_TOO_LONG: DenialReason.VIDEO_TOO_LONG,
    pb.DENIAL_REASON_TOO_MANY_HOLDS: DenialReason.TOO_MANY_HOLDS,
    pb.DENIAL_REASON_INSUFFICIENT_FUNDS: DenialReason.INSUFFICIENT_FUNDS,
}


def kind_to_pb(kind: Kind | str) -> int:
    """The wire value of a kind given as `Kind` or its string; `ValueError` when unknown."""
    try:
        return _KIND_TO_PB[Kind(kind)]
    except ValueError:
        known = ", ".join(k.value for k in Kind)
        raise ValueError(f"unknown generation kind {kind!r} (known: {known})") from None


def reason_to_pb(reason: ReleaseReason | str) -> int:
    """The wire value of a release reason given as `ReleaseReason` or its string."""
    try:
        return _REASON_TO_PB[ReleaseReason(reason)]
    except ValueError:
        known = ", ".join(r.value for r in ReleaseReason)
        raise ValueError(f"unknown release reason {reason!r} (known: {known})") from None


def _time(message: object, name: str) -> datetime | None:
    """A Timestamp field as an aware UTC datetime; None when unset."""
    if not message.HasField(name):  # type: ignore[attr-defined]
        return None
    ts: Timestamp = getattr(message, name)
    return datetime.fromtimestamp(ts.seconds, tz=timezone.utc).replace(
        microsecond=ts.nanos // 1000
    )


@dataclass(frozen=True)
class Balance:
    """An account's funds. Allowance (plan, per cycle) and credits (grants) stay separate."""

    account_id: str
    plan: str
    # Empty when no plan change is scheduled.
    scheduled_plan: str
    cycle_start: datetime | None
    cycle_end: datetime | None
    allowance_total: int
    allowance_used: int
    allowance_held: int
    allowance_available: int
    credits_available: int
    credits_held: int
    open_holds: int

    @classmethod
    def from_pb(cls, m: pb.Balance) -> Balance:
        return cls(
            account_id=m.account_id,
            plan=m.plan,
            scheduled_plan=m.scheduled_plan,
            cycle_start=_time(m, "cycle_start"),
            cycle_end=_time(m, "cycle_end"),
            allowance_total=m.allowance_total,
            allowance_used=m.allowance_used,
            allowance_held=m.allowance_held,
            allowance_available=m.allowance_available,
            credits_available=m.credits_available,
            credits_held=m.credits_held,
            open_holds=m.open_holds,
        )

    @property
    def available_units(self) -> int:
        """Allowance and credits that a new hold could draw on."""
        return self.allowance_available + self.credits_available


@dataclass(frozen=True)
class GrantDraw:
    """Units a hold drew from one credit grant."""

    grant_id: str
    units: int


@dataclass(frozen=True)
class Hold:
    """Funds put aside for one generation; its id is the generation id."""

    account_id: str
    generation_id: str
    kind: Kind | None
    model: str
    quantity: int
    cost_units: int
    from_allowance: int
    from_credits: int
    grants: tuple[GrantDraw, ...]
    state: HoldState
    expires_at: datetime | None
    created_at: datetime | None
    # Units charged by Settle; 0 until settled.
    charged_units: int

    @classmethod
    def from_pb(cls, m: pb.Hold) -> Hold:
        return cls(
            account_id=m.account_id,
            generation_id=m.generation_id,
            kind=_KIND_FROM_PB.get(m.kind),
            model=m.model,
            quantity=m.quantity,
            cost_units=m.cost_units,
            from_allowance=m.from_allowance,
            from_credits=m.from_credits,
            grants=tuple(GrantDraw(g.grant_id, g.units) for g in m.grants),
            state=_STATE_FROM_PB.get(m.state, HoldState.UNSPECIFIED),
            expires_at=_time(m, "expires_at"),
            created_at=_time(m, "created_at"),
            charged_units=m.charged_units,
        )


@dataclass(frozen=True)
class Reservation:
    """What Reserve answered: the hold, whether it was a replay, and the balance after."""

    hold: Hold
    # True when this generation id was already reserved and the first hold came back.
    replayed: bool
    balance: Balance

    @classmethod
    def from_pb(cls, m: pb.ReserveResponse) -> Reservation:
        return cls(Hold.from_pb(m.hold), m.replayed, Balance.from_pb(m.balance))


@dataclass(frozen=True)
class Settlement:
    """What Settle answered."""

    hold: Hold
    charged_units: int
    returned_units: int
    replayed: bool
    balance: Balance

    @classmethod
    def from_pb(cls, m: pb.SettleResponse) -> Settlement:
        return cls(
            Hold.from_pb(m.hold),
            m.charged_units,
            m.returned_units,
            m.replayed,
            Balance.from_pb(m.balance),
        )


@dataclass(frozen=True)
class Release:
    """What Release answered."""

    hold: Hold
    returned_units: int
    replayed: bool
    balance: Balance

    @classmethod
    def from_pb(cls, m: pb.ReleaseResponse) -> Release:
        return cls(Hold.from_pb(m.hold), m.returned_units, m.replayed, Balance.from_pb(m.balance))


@dataclass(frozen=True)
class Quote:
    """What Reserve would answer now; nothing was held."""

    cost_units: int
    from_allowance: int
    from_credits: int
    allowed: bool
    # Set when not allowed, with the message Reserve would give.
    denial: DenialReason | None
    denial_message: str
    balance: Balance


@dataclass(frozen=True)
class BatchReservation:
    """What ReserveBatch answered: the holds in the order of the request's items."""

    holds: tuple[Hold, ...]
    replayed: bool
    balance: Balance

    @classmethod
    def from_pb(cls, m: pb.ReserveBatchResponse) -> BatchReservation:
        return cls(tuple(Hold.from_pb(h) for h in m.holds), m.replayed, Balance.from_pb(m.balance))


@dataclass(frozen=True)
class BatchItem:
    """One generation of a `reserve_batch` call."""

    generation_id: str
    kind: Kind | str
    quantity: int
    model: str = "standard"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """A plan of the catalog and the features it allows."""

    id: str
    price_cents: int
    allowance_units: int
    models: tuple[str, ...]
    max_open_holds: int
    max_video_seconds: int


@dataclass(frozen=True)
class Price:
    """Units per image, or per video second, of one kind on one model."""

    kind: Kind | None
    model: str
    units_per_item: int


@dataclass(frozen=True)
class Catalog:
    """Plans, prices and usage alert thresholds in force."""

    # Changes whenever the catalog's content changes.
    version: str
    plans: tuple[Plan, ...]
    prices: tuple[Price, ...]
    alert_thresholds_percent: tuple[int, ...]

    def plan(self, plan_id: str) -> Plan | None:
        """The plan with this id, if the catalog has it."""
        return next((p for p in self.plans if p.id == plan_id), None)

    def units_per_item(self, kind: Kind | str, model: str = "standard") -> int | None:
        """Price of one image or video second of `kind` on `model`, if listed."""
        kind = Kind(kind)
        return next(
            (p.units_per_item for p in self.prices if p.kind == kind and p.model == model),
            None,
        )


def quote_from_pb(m: pb.QuoteResponse) -> Quote:
    return Quote(
        cost_units=m.cost_units,
        from_allowance=m.from_allowance,
        from_credits=m.from_credits,
        allowed=m.allowed,
        denial=None if m.allowed else _DENIAL_FROM_PB.get(m.denial, DenialReason.UNSPECIFIED),
        denial_message=m.denial_message,
        balance=Balance.from_pb(m.balance),
    )


def catalog_from_pb(m: pb.Catalog) -> Catalog:
    return Catalog(
        version=m.version,
        plans=tuple(
            Plan(
                id=p.id,
                price_cents=p.price_cents,
                allowance_units=p.allowance_units,
                models=tuple(p.models),
                max_open_holds=p.max_open_holds,
                max_video_seconds=p.max_video_seconds,
            )
            for p in m.plans
        ),
        prices=tuple(
            Price(kind=_KIND_FROM_PB.get(p.kind), model=p.model, units_per_item=p.units_per_item)
            for p in m.prices
        ),
        alert_thresholds_percent=tuple(m.alert_thresholds_percent),
    )
