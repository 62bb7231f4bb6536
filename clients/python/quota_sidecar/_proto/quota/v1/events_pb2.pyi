from google.protobuf import timestamp_pb2 as _timestamp_pb2
from quota_sidecar._proto.quota.v1 import quota_pb2 as _quota_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AckRequest(_message.Message):
    __slots__ = ["ack_ids", "group"]
    ACK_IDS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ack_ids: _containers.RepeatedScalarFieldContainer[str]
    group: str
    def __init__(self, group: _Optional[str] = ..., ack_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ["acked"]
    ACKED_FIELD_NUMBER: _ClassVar[int]
    acked: int
    def __init__(self, acked: _Optional[int] = ...) -> None: ...

class ConsumerGroup(_message.Message):
    __slots__ = ["lag", "name", "oldest_unacked_ack_id", "oldest_unacked_age_ms", "pending"]
    LAG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNACKED_ACK_ID_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNACKED_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    lag: int
    name: str
    oldest_unacked_ack_id: str
    oldest_unacked_age_ms: int
    pending: int
    def __init__(self, name: _Optional[str] = ..., pending: _Optional[int] = ..., oldest_unacked_ack_id: _Optional[str] = ..., oldest_unacked_age_ms: _Optional[int] = ..., lag: _Optional[int] = ...) -> None: ...

class DeleteGroupRequest(_message.Message):
    __slots__ = ["group"]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    group: str
    def __init__(self, group: _Optional[str] = ...) -> None: ...

class DeleteGroupResponse(_message.Message):
    __slots__ = ["deleted"]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: bool = ...) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ["groups"]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[ConsumerGroup]
    def __init__(self, groups: _Optional[_Iterable[_Union[ConsumerGroup, _Mapping]]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ["consumer", "ephemeral", "group"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    EPHEMERAL_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    ephemeral: bool
    group: str
    def __init__(self, group: _Optional[str] = ..., consumer: _Optional[str] = ..., ephemeral: bool = ...) -> None: ...

class UsageEvent(_message.Message):
    __slots__ = ["account_id", "ack_id", "allowance_added", "cycle_start", "effective_at", "expires_at", "from_allowance", "from_credits", "generation_id", "grant_id", "grants", "id", "kind", "labels", "model", "plan", "previous_plan", "prorated_charge_cents", "quantity", "reason", "refund_id", "sequence", "source", "threshold_percent", "time", "type", "units", "units_lost"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_ADDED_FIELD_NUMBER: _ClassVar[int]
    CYCLE_START_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    FROM_ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    FROM_CREDITS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    GRANT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PLAN_FIELD_NUMBER: _ClassVar[int]
    PRORATED_CHARGE_CENTS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REFUND_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    UNITS_LOST_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    ack_id: str
    allowance_added: int
    cycle_start: _timestamp_pb2.Timestamp
    effective_at: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    from_allowance: int
    from_credits: int
    generation_id: str
    grant_id: str
    grants: _containers.RepeatedCompositeFieldContainer[_quota_pb2.GrantDraw]
    id: str
    kind: _quota_pb2.GenerationKind
    labels: _containers.ScalarMap[str, str]
    model: str
    plan: str
    previous_plan: str
    prorated_charge_cents: int
    quantity: int
    reason: str
    refund_id: str
    sequence: int
    source: str
    threshold_percent: int
    time: _timestamp_pb2.Timestamp
    type: str
    units: int
    units_lost: int
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., account_id: _Optional[str] = ..., time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., sequence: _Optional[int] = ..., ack_id: _Optional[str] = ..., generation_id: _Optional[str] = ..., kind: _Optional[_Union[_quota_pb2.GenerationKind, str]] = ..., model: _Optional[str] = ..., quantity: _Optional[int] = ..., units: _Optional[int] = ..., from_allowance: _Optional[int] = ..., from_credits: _Optional[int] = ..., grants: _Optional[_Iterable[_Union[_quota_pb2.GrantDraw, _Mapping]]] = ..., reason: _Optional[str] = ..., plan: _Optional[str] = ..., previous_plan: _Optional[str] = ..., cycle_start: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., allowance_added: _Optional[int] = ..., prorated_charge_cents: _Optional[int] = ..., grant_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., source: _Optional[str] = ..., expires_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., effective_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., units_lost: _Optional[int] = ..., threshold_percent: _Optional[int] = ..., refund_id: _Optional[str] = ...) -> None: ...
