import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GENERATION_KIND_UNSPECIFIED: _ClassVar[GenerationKind]
    GENERATION_KIND_CHARACTER_IMAGE: _ClassVar[GenerationKind]
    GENERATION_KIND_LOCATION_IMAGE: _ClassVar[GenerationKind]
    GENERATION_KIND_FIRST_FRAME: _ClassVar[GenerationKind]
    GENERATION_KIND_VIDEO: _ClassVar[GenerationKind]

class HoldState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOLD_STATE_UNSPECIFIED: _ClassVar[HoldState]
    HOLD_STATE_HELD: _ClassVar[HoldState]
    HOLD_STATE_SETTLED: _ClassVar[HoldState]
    HOLD_STATE_RELEASED: _ClassVar[HoldState]
    HOLD_STATE_EXPIRED: _ClassVar[HoldState]

class ReleaseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_REASON_UNSPECIFIED: _ClassVar[ReleaseReason]
    RELEASE_REASON_FAILED: _ClassVar[ReleaseReason]
    RELEASE_REASON_CONTENT_FILTERED: _ClassVar[ReleaseReason]
    RELEASE_REASON_SYSTEM_ERROR: _ClassVar[ReleaseReason]
    RELEASE_REASON_CANCELLED: _ClassVar[ReleaseReason]

class CreditSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDIT_SOURCE_UNSPECIFIED: _ClassVar[CreditSource]
    CREDIT_SOURCE_PROMOTIONAL: _ClassVar[CreditSource]
    CREDIT_SOURCE_PURCHASED: _ClassVar[CreditSource]

class PlanChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_CHANGE_UNSPECIFIED: _ClassVar[PlanChange]
    PLAN_CHANGE_STARTED: _ClassVar[PlanChange]
    PLAN_CHANGE_UPGRADED: _ClassVar[PlanChange]
    PLAN_CHANGE_DOWNGRADE_SCHEDULED: _ClassVar[PlanChange]
    PLAN_CHANGE_SCHEDULED_CHANGE_CANCELLED: _ClassVar[PlanChange]
    PLAN_CHANGE_UNCHANGED: _ClassVar[PlanChange]

class DenialReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENIAL_REASON_UNSPECIFIED: _ClassVar[DenialReason]
    DENIAL_REASON_MODEL_NOT_IN_PLAN: _ClassVar[DenialReason]
    DENIAL_REASON_VIDEO_TOO_LONG: _ClassVar[DenialReason]
    DENIAL_REASON_TOO_MANY_HOLDS: _ClassVar[DenialReason]
    DENIAL_REASON_INSUFFICIENT_FUNDS: _ClassVar[DenialReason]
GENERATION_KIND_UNSPECIFIED: GenerationKind
GENERATION_KIND_CHARACTER_IMAGE: GenerationKind
GENERATION_KIND_LOCATION_IMAGE: GenerationKind
GENERATION_KIND_FIRST_FRAME: GenerationKind
GENERATION_KIND_VIDEO: GenerationKind
HOLD_STATE_UNSPECIFIED: HoldState
HOLD_STATE_HELD: HoldState
HOLD_STATE_SETTLED: HoldState
HOLD_STATE_RELEASED: HoldState
HOLD_STATE_EXPIRED: HoldState
RELEASE_REASON_UNSPECIFIED: ReleaseReason
RELEASE_REASON_FAILED: ReleaseReason
RELEASE_REASON_CONTENT_FILTERED: ReleaseReason
RELEASE_REASON_SYSTEM_ERROR: ReleaseReason
RELEASE_REASON_CANCELLED: ReleaseReason
CREDIT_SOURCE_UNSPECIFIED: CreditSource
CREDIT_SOURCE_PROMOTIONAL: CreditSource
CREDIT_SOURCE_PURCHASED: CreditSource
PLAN_CHANGE_UNSPECIFIED: PlanChange
PLAN_CHANGE_STARTED: PlanChange
PLAN_CHANGE_UPGRADED: PlanChange
PLAN_CHANGE_DOWNGRADE_SCHEDULED: PlanChange
PLAN_CHANGE_SCHEDULED_CHANGE_CANCELLED: PlanChange
PLAN_CHANGE_UNCHANGED: PlanChange
DENIAL_REASON_UNSPECIFIED: DenialReason
DENIAL_REASON_MODEL_NOT_IN_PLAN: DenialReason
DENIAL_REASON_VIDEO_TOO_LONG: DenialReason
DENIAL_REASON_TOO_MANY_HOLDS: DenialReason
DENIAL_REASON_INSUFFICIENT_FUNDS: DenialReason

class Balance(_message.Message):
    __slots__ = ("account_id", "plan", "scheduled_plan", "cycle_start", "cycle_end", "allowance_total", "allowance_used", "allowance_held", "allowance_available", "credits_available", "credits_held", "open_holds")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_PLAN_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_USED_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_HELD_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_HELD_FIELD_NUMBER: _ClassVar[int]
    OPEN_HOLDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    plan: str
    scheduled_plan: str
    cycle_start: _timestamp_pb2.Timestamp
    cycle_end: _timestamp_pb2.Timestamp
    allowance_total: int
    allowance_used: int
    allowance_held: int
    allowance_available: int
    credits_available: int
    credits_held: int
    open_holds: int
    def __init__(self, account_id: _Optional[str] = ..., plan: _Optional[str] = ..., scheduled_plan: _Optional[str] = ..., cycle_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cycle_end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allowance_total: _Optional[int] = ..., allowance_used: _Optional[int] = ..., allowance_held: _Optional[int] = ..., allowance_available: _Optional[int] = ..., credits_available: _Optional[int] = ..., credits_held: _Optional[int] = ..., open_holds: _Optional[int] = ...) -> None: ...

class GrantDraw(_message.Message):
    __slots__ = ("grant_id", "units")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    units: int
    def __init__(self, grant_id: _Optional[str] = ..., units: _Optional[int] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ("account_id", "generation_id", "kind", "model", "quantity", "cost_units", "from_allowance", "from_credits", "grants", "state", "expires_at", "created_at", "charged_units")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    FROM_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    FROM_CREDITS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CHARGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    kind: GenerationKind
    model: str
    quantity: int
    cost_units: int
    from_allowance: int
    from_credits: int
    grants: _containers.RepeatedCompositeFieldContainer[GrantDraw]
    state: HoldState
    expires_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    charged_units: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., cost_units: _Optional[int] = ..., from_allowance: _Optional[int] = ..., from_credits: _Optional[int] = ..., grants: _Optional[_Iterable[_Union[GrantDraw, _Mapping]]] = ..., state: _Optional[_Union[HoldState, str]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., charged_units: _Optional[int] = ...) -> None: ...

class Grant(_message.Message):
    __slots__ = ("grant_id", "source", "units_granted", "units_remaining", "units_held", "expires_at", "created_at")
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UNITS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    UNITS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    UNITS_HELD_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    source: CreditSource
    units_granted: int
    units_remaining: int
    units_held: int
    expires_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, grant_id: _Optional[str] = ..., source: _Optional[_Union[CreditSource, str]] = ..., units_granted: _Optional[int] = ..., units_remaining: _Optional[int] = ..., units_held: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("account_id", "generation_id", "kind", "model", "quantity", "ttl_seconds", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    kind: GenerationKind
    model: str
    quantity: int
    ttl_seconds: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("hold", "replayed", "balance")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    replayed: bool
    balance: Balance
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., replayed: _Optional[bool] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("account_id", "generation_id", "actual_quantity")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    actual_quantity: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., actual_quantity: _Optional[int] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ("hold", "charged_units", "returned_units", "replayed", "balance")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    CHARGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    RETURNED_UNITS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    charged_units: int
    returned_units: int
    replayed: bool
    balance: Balance
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., charged_units: _Optional[int] = ..., returned_units: _Optional[int] = ..., replayed: _Optional[bool] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("account_id", "generation_id", "reason")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    reason: ReleaseReason
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., reason: _Optional[_Union[ReleaseReason, str]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("hold", "returned_units", "replayed", "balance")
    HOLD_FIELD_NUMBER: _ClassVar[int]
    RETURNED_UNITS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    returned_units: int
    replayed: bool
    balance: Balance
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., returned_units: _Optional[int] = ..., replayed: _Optional[bool] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ("account_id", "generation_id", "ttl_seconds")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    ttl_seconds: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ("hold",)
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class QuoteRequest(_message.Message):
    __slots__ = ("account_id", "kind", "model", "quantity")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    kind: GenerationKind
    model: str
    quantity: int
    def __init__(self, account_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class QuoteResponse(_message.Message):
    __slots__ = ("cost_units", "from_allowance", "from_credits", "allowed", "denial", "denial_message", "balance")
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    FROM_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    FROM_CREDITS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    DENIAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    cost_units: int
    from_allowance: int
    from_credits: int
    allowed: bool
    denial: DenialReason
    denial_message: str
    balance: Balance
    def __init__(self, cost_units: _Optional[int] = ..., from_allowance: _Optional[int] = ..., from_credits: _Optional[int] = ..., allowed: _Optional[bool] = ..., denial: _Optional[_Union[DenialReason, str]] = ..., denial_message: _Optional[str] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReserveItem(_message.Message):
    __slots__ = ("generation_id", "kind", "model", "quantity", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    kind: GenerationKind
    model: str
    quantity: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReserveBatchRequest(_message.Message):
    __slots__ = ("account_id", "items", "ttl_seconds")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    items: _containers.RepeatedCompositeFieldContainer[ReserveItem]
    ttl_seconds: int
    def __init__(self, account_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ReserveItem, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ReserveBatchResponse(_message.Message):
    __slots__ = ("holds", "replayed", "balance")
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    replayed: bool
    balance: Balance
    def __init__(self, holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., replayed: _Optional[bool] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Catalog(_message.Message):
    __slots__ = ("version", "plans", "prices", "alert_thresholds_percent")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    ALERT_THRESHOLDS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    version: str
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    alert_thresholds_percent: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, version: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ..., prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ..., alert_thresholds_percent: _Optional[_Iterable[int]] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("id", "price_cents", "allowance_units", "models", "max_open_holds", "max_video_seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_UNITS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_HOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_VIDEO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    price_cents: int
    allowance_units: int
    models: _containers.RepeatedScalarFieldContainer[str]
    max_open_holds: int
    max_video_seconds: int
    def __init__(self, id: _Optional[str] = ..., price_cents: _Optional[int] = ..., allowance_units: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., max_open_holds: _Optional[int] = ..., max_video_seconds: _Optional[int] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ("kind", "model", "units_per_item")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNITS_PER_ITEM_FIELD_NUMBER: _ClassVar[int]
    kind: GenerationKind
    model: str
    units_per_item: int
    def __init__(self, kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., units_per_item: _Optional[int] = ...) -> None: ...
