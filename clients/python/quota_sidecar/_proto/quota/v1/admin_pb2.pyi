from google.protobuf import timestamp_pb2 as _timestamp_pb2
from quota_sidecar._proto.quota.v1 import quota_pb2 as _quota_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Account(_message.Message):
    __slots__ = ["balance", "grants", "holds", "lifetime_charged_allowance_units", "lifetime_charged_credit_units"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_CHARGED_ALLOWANCE_UNITS_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_CHARGED_CREDIT_UNITS_FIELD_NUMBER: _ClassVar[int]
    balance: _quota_pb2.Balance
    grants: _containers.RepeatedCompositeFieldContainer[_quota_pb2.Grant]
    holds: _containers.RepeatedCompositeFieldContainer[_quota_pb2.Hold]
    lifetime_charged_allowance_units: int
    lifetime_charged_credit_units: int
    def __init__(self, balance: _Optional[_Union[_quota_pb2.Balance, _Mapping]] = ..., grants: _Optional[_Iterable[_Union[_quota_pb2.Grant, _Mapping]]] = ..., holds: _Optional[_Iterable[_Union[_quota_pb2.Hold, _Mapping]]] = ..., lifetime_charged_allowance_units: _Optional[int] = ..., lifetime_charged_credit_units: _Optional[int] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ["account_id"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class GrantCreditsRequest(_message.Message):
    __slots__ = ["account_id", "expires_at", "grant_id", "source", "units"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    expires_at: _timestamp_pb2.Timestamp
    grant_id: str
    source: _quota_pb2.CreditSource
    units: int
    def __init__(self, account_id: _Optional[str] = ..., grant_id: _Optional[str] = ..., units: _Optional[int] = ..., source: _Optional[_Union[_quota_pb2.CreditSource, str]] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GrantCreditsResponse(_message.Message):
    __slots__ = ["balance", "grant", "replayed"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    balance: _quota_pb2.Balance
    grant: _quota_pb2.Grant
    replayed: bool
    def __init__(self, grant: _Optional[_Union[_quota_pb2.Grant, _Mapping]] = ..., replayed: bool = ..., balance: _Optional[_Union[_quota_pb2.Balance, _Mapping]] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ["account_id", "generation_id", "reason", "refund_id", "units"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    generation_id: str
    reason: str
    refund_id: str
    units: int
    def __init__(self, account_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., refund_id: _Optional[str] = ..., units: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RefundResponse(_message.Message):
    __slots__ = ["balance", "grant_id", "refunded_units", "replayed", "to_allowance", "to_credits"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_UNITS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    TO_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    TO_CREDITS_FIELD_NUMBER: _ClassVar[int]
    balance: _quota_pb2.Balance
    grant_id: str
    refunded_units: int
    replayed: bool
    to_allowance: int
    to_credits: int
    def __init__(self, refunded_units: _Optional[int] = ..., to_allowance: _Optional[int] = ..., to_credits: _Optional[int] = ..., grant_id: _Optional[str] = ..., replayed: bool = ..., balance: _Optional[_Union[_quota_pb2.Balance, _Mapping]] = ...) -> None: ...

class RevokeCreditsRequest(_message.Message):
    __slots__ = ["account_id", "grant_id"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    grant_id: str
    def __init__(self, account_id: _Optional[str] = ..., grant_id: _Optional[str] = ...) -> None: ...

class RevokeCreditsResponse(_message.Message):
    __slots__ = ["balance", "revoked_units"]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    REVOKED_UNITS_FIELD_NUMBER: _ClassVar[int]
    balance: _quota_pb2.Balance
    revoked_units: int
    def __init__(self, revoked_units: _Optional[int] = ..., balance: _Optional[_Union[_quota_pb2.Balance, _Mapping]] = ...) -> None: ...

class SetPlanRequest(_message.Message):
    __slots__ = ["account_id", "cycle_anchor", "plan", "request_id"]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    CYCLE_ANCHOR_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    cycle_anchor: _timestamp_pb2.Timestamp
    plan: str
    request_id: str
    def __init__(self, request_id: _Optional[str] = ..., account_id: _Optional[str] = ..., plan: _Optional[str] = ..., cycle_anchor: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetPlanResponse(_message.Message):
    __slots__ = ["allowance_added", "balance", "change", "effective_at", "prorated_charge_cents", "replayed"]
    ALLOWANCE_ADDED_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    PRORATED_CHARGE_CENTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    allowance_added: int
    balance: _quota_pb2.Balance
    change: _quota_pb2.PlanChange
    effective_at: _timestamp_pb2.Timestamp
    prorated_charge_cents: int
    replayed: bool
    def __init__(self, change: _Optional[_Union[_quota_pb2.PlanChange, str]] = ..., effective_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., allowance_added: _Optional[int] = ..., prorated_charge_cents: _Optional[int] = ..., replayed: bool = ..., balance: _Optional[_Union[_quota_pb2.Balance, _Mapping]] = ...) -> None: ...
