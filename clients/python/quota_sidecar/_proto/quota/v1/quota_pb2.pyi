from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

CREDIT_SOURCE_PROMOTIONAL: CreditSource
CREDIT_SOURCE_PURCHASED: CreditSource
CREDIT_SOURCE_UNSPECIFIED: CreditSource
DENIAL_REASON_INSUFFICIENT_FUNDS: DenialReason
DENIAL_REASON_MODEL_NOT_IN_PLAN: DenialReason
DENIAL_REASON_TOO_MANY_HOLDS: DenialReason
DENIAL_REASON_UNSPECIFIED: DenialReason
DENIAL_REASON_VIDEO_TOO_LONG: DenialReason
DESCRIPTOR: _descriptor.FileDescriptor
GENERATION_KIND_CHARACTER_IMAGE: GenerationKind
GENERATION_KIND_FIRST_FRAME: GenerationKind
GENERATION_KIND_LOCATION_IMAGE: GenerationKind
GENERATION_KIND_UNSPECIFIED: GenerationKind
GENERATION_KIND_VIDEO: GenerationKind
HOLD_STATE_EXPIRED: HoldState
HOLD_STATE_HELD: HoldState
HOLD_STATE_RELEASED: HoldState
HOLD_STATE_SETTLED: HoldState
HOLD_STATE_UNSPECIFIED: HoldState
PLAN_CHANGE_DOWNGRADE_SCHEDULED: PlanChange
PLAN_CHANGE_SCHEDULED_CHANGE_CANCELLED: PlanChange
PLAN_CHANGE_STARTED: PlanChange
PLAN_CHANGE_UNCHANGED: PlanChange
PLAN_CHANGE_UNSPECIFIED: PlanChange
PLAN_CHANGE_UPGRADED: PlanChange
RELEASE_REASON_CANCELLED: ReleaseReason
RELEASE_REASON_CONTENT_FILTERED: ReleaseReason
RELEASE_REASON_FAILED: ReleaseReason
RELEASE_REASON_SYSTEM_ERROR: ReleaseReason
RELEASE_REASON_UNSPECIFIED: ReleaseReason

class Balance(_message.Message):
    __slots__ = ["account_id", "allowance_available", "allowance_held", "allowance_total", "allowance_used", "credits_available", "credits_held", "cycle_end", "cycle_start", "open_holds", "plan", "scheduled_plan"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_HELD_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_USED_FIELD_NUMBER: _ClassVar[int]
    CREDITS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CREDITS_HELD_FIELD_NUMBER: _ClassVar[int]
    CYCLE_END_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_FIELD_NUMBER: _ClassVar[int]
    OPEN_HOLDS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_PLAN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    allowance_available: int
    allowance_held: int
    allowance_total: int
    allowance_used: int
    credits_available: int
    credits_held: int
    cycle_end: _timestamp_pb2.Timestamp
    cycle_start: _timestamp_pb2.Timestamp
    open_holds: int
    plan: str
    scheduled_plan: str
    def __init__(self, account_id: _Optional[str] = ..., plan: _Optional[str] = ..., scheduled_plan: _Optional[str] = ..., cycle_start: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., cycle_end: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., allowance_total: _Optional[int] = ..., allowance_used: _Optional[int] = ..., allowance_held: _Optional[int] = ..., allowance_available: _Optional[int] = ..., credits_available: _Optional[int] = ..., credits_held: _Optional[int] = ..., open_holds: _Optional[int] = ...) -> None: ...

class Catalog(_message.Message):
    __slots__ = ["alert_thresholds_percent", "plans", "prices", "version"]
    ALERT_THRESHOLDS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    alert_thresholds_percent: _containers.RepeatedScalarFieldContainer[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    prices: _containers.RepeatedCompositeFieldContainer[Price]
    version: str
    def __init__(self, version: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ..., prices: _Optional[_Iterable[_Union[Price, _Mapping]]] = ..., alert_thresholds_percent: _Optional[_Iterable[int]] = ...) -> None: ...

class ExtendRequest(_message.Message):
    __slots__ = ["account_id", "generation_id", "ttl_seconds"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    ttl_seconds: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ExtendResponse(_message.Message):
    __slots__ = ["hold"]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    hold: Hold
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ...) -> None: ...

class GetBalanceRequest(_message.Message):
    __slots__ = ["account_id"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GetCatalogRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Grant(_message.Message):
    __slots__ = ["created_at", "expires_at", "grant_id", "source", "units_granted", "units_held", "units_remaining"]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UNITS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    UNITS_HELD_FIELD_NUMBER: _ClassVar[int]
    UNITS_REMAINING_FIELD_NUMBER: _ClassVar[int]
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    grant_id: str
    source: CreditSource
    units_granted: int
    units_held: int
    units_remaining: int
    def __init__(self, grant_id: _Optional[str] = ..., source: _Optional[_Union[CreditSource, str]] = ..., units_granted: _Optional[int] = ..., units_remaining: _Optional[int] = ..., units_held: _Optional[int] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GrantDraw(_message.Message):
    __slots__ = ["grant_id", "units"]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    grant_id: str
    units: int
    def __init__(self, grant_id: _Optional[str] = ..., units: _Optional[int] = ...) -> None: ...

class Hold(_message.Message):
    __slots__ = ["account_id", "charged_units", "cost_units", "created_at", "expires_at", "from_allowance", "from_credits", "generation_id", "grants", "kind", "model", "quantity", "state"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    FROM_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    FROM_CREDITS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    charged_units: int
    cost_units: int
    created_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    from_allowance: int
    from_credits: int
    generation_id: str
    grants: _containers.RepeatedCompositeFieldContainer[GrantDraw]
    kind: GenerationKind
    model: str
    quantity: int
    state: HoldState
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., cost_units: _Optional[int] = ..., from_allowance: _Optional[int] = ..., from_credits: _Optional[int] = ..., grants: _Optional[_Iterable[_Union[GrantDraw, _Mapping]]] = ..., state: _Optional[_Union[HoldState, str]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., charged_units: _Optional[int] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ["allowance_units", "id", "max_open_holds", "max_video_seconds", "models", "price_cents"]
    ALLOWANCE_UNITS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_HOLDS_FIELD_NUMBER: _ClassVar[int]
    MAX_VIDEO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PRICE_CENTS_FIELD_NUMBER: _ClassVar[int]
    allowance_units: int
    id: str
    max_open_holds: int
    max_video_seconds: int
    models: _containers.RepeatedScalarFieldContainer[str]
    price_cents: int
    def __init__(self, id: _Optional[str] = ..., price_cents: _Optional[int] = ..., allowance_units: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., max_open_holds: _Optional[int] = ..., max_video_seconds: _Optional[int] = ...) -> None: ...

class Price(_message.Message):
    __slots__ = ["kind", "model", "units_per_item"]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UNITS_PER_ITEM_FIELD_NUMBER: _ClassVar[int]
    kind: GenerationKind
    model: str
    units_per_item: int
    def __init__(self, kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., units_per_item: _Optional[int] = ...) -> None: ...

class QuoteRequest(_message.Message):
    __slots__ = ["account_id", "kind", "model", "quantity"]
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
    __slots__ = ["allowed", "balance", "cost_units", "denial", "denial_message", "from_allowance", "from_credits"]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    COST_UNITS_FIELD_NUMBER: _ClassVar[int]
    DENIAL_FIELD_NUMBER: _ClassVar[int]
    DENIAL_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    FROM_CREDITS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    balance: Balance
    cost_units: int
    denial: DenialReason
    denial_message: str
    from_allowance: int
    from_credits: int
    def __init__(self, cost_units: _Optional[int] = ..., from_allowance: _Optional[int] = ..., from_credits: _Optional[int] = ..., allowed: bool = ..., denial: _Optional[_Union[DenialReason, str]] = ..., denial_message: _Optional[str] = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ["account_id", "generation_id", "reason"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    reason: ReleaseReason
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., reason: _Optional[_Union[ReleaseReason, str]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ["balance", "hold", "replayed", "returned_units"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    RETURNED_UNITS_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    hold: Hold
    replayed: bool
    returned_units: int
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., returned_units: _Optional[int] = ..., replayed: bool = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReserveBatchRequest(_message.Message):
    __slots__ = ["account_id", "items", "ttl_seconds"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    items: _containers.RepeatedCompositeFieldContainer[ReserveItem]
    ttl_seconds: int
    def __init__(self, account_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[ReserveItem, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ReserveBatchResponse(_message.Message):
    __slots__ = ["balance", "holds", "replayed"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    replayed: bool
    def __init__(self, holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., replayed: bool = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class ReserveItem(_message.Message):
    __slots__ = ["generation_id", "kind", "labels", "model", "quantity"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    generation_id: str
    kind: GenerationKind
    labels: _containers.ScalarMap[str, str]
    model: str
    quantity: int
    def __init__(self, generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ["account_id", "generation_id", "kind", "labels", "model", "quantity", "ttl_seconds"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    kind: GenerationKind
    labels: _containers.ScalarMap[str, str]
    model: str
    quantity: int
    ttl_seconds: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., kind: _Optional[_Union[GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ["balance", "hold", "replayed"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    hold: Hold
    replayed: bool
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., replayed: bool = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ["account_id", "actual_quantity", "generation_id"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    actual_quantity: int
    generation_id: str
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., actual_quantity: _Optional[int] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ["balance", "charged_units", "hold", "replayed", "returned_units"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    CHARGED_UNITS_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    RETURNED_UNITS_FIELD_NUMBER: _ClassVar[int]
    balance: Balance
    charged_units: int
    hold: Hold
    replayed: bool
    returned_units: int
    def __init__(self, hold: _Optional[_Union[Hold, _Mapping]] = ..., charged_units: _Optional[int] = ..., returned_units: _Optional[int] = ..., replayed: bool = ..., balance: _Optional[_Union[Balance, _Mapping]] = ...) -> None: ...

class GenerationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class HoldState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReleaseReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CreditSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class PlanChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DenialReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
