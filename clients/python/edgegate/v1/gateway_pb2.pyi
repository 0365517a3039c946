from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
DEVICE_STATE_CONNECTED: DeviceState
DEVICE_STATE_CONNECTING: DeviceState
DEVICE_STATE_DISCONNECTED: DeviceState
DEVICE_STATE_ERROR: DeviceState
DEVICE_STATE_UNSPECIFIED: DeviceState
PRIORITY_CRITICAL: Priority
PRIORITY_HIGH: Priority
PRIORITY_LOW: Priority
PRIORITY_NORMAL: Priority
PRIORITY_UNSPECIFIED: Priority
PROTOCOL_COAP: Protocol
PROTOCOL_MODBUS: Protocol
PROTOCOL_MQTT: Protocol
PROTOCOL_OPCUA: Protocol
PROTOCOL_UNSPECIFIED: Protocol
QUALITY_BAD: Quality
QUALITY_GOOD: Quality
QUALITY_UNCERTAIN: Quality
QUALITY_UNSPECIFIED: Quality
READ_SOURCE_CACHE: ReadSource
READ_SOURCE_DEVICE: ReadSource
SHED_POLICY_DROP: ShedPolicy
SHED_POLICY_HOLD: ShedPolicy
SHED_POLICY_LATEST: ShedPolicy

class AckRequest(_message.Message):
    __slots__ = ["consumer", "sequence"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    sequence: int
    def __init__(self, consumer: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ["sequence"]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ["bytes_per_second", "messages_per_second"]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    bytes_per_second: float
    messages_per_second: float
    def __init__(self, messages_per_second: _Optional[float] = ..., bytes_per_second: _Optional[float] = ...) -> None: ...

class Consumer(_message.Message):
    __slots__ = ["acknowledged", "expires", "last_used", "name", "owner", "sequence"]
    ACKNOWLEDGED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    acknowledged: bool
    expires: _timestamp_pb2.Timestamp
    last_used: _timestamp_pb2.Timestamp
    name: str
    owner: str
    sequence: int
    def __init__(self, name: _Optional[str] = ..., sequence: _Optional[int] = ..., acknowledged: bool = ..., owner: _Optional[str] = ..., last_used: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., expires: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeleteConsumerRequest(_message.Message):
    __slots__ = ["consumer"]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    def __init__(self, consumer: _Optional[str] = ...) -> None: ...

class DeleteConsumerResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ["errors", "id", "last_error", "last_seen", "messages", "points", "protocol", "state", "state_since", "writes"]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    errors: int
    id: str
    last_error: str
    last_seen: _timestamp_pb2.Timestamp
    messages: int
    points: _containers.RepeatedScalarFieldContainer[str]
    protocol: Protocol
    state: DeviceState
    state_since: _timestamp_pb2.Timestamp
    writes: int
    def __init__(self, id: _Optional[str] = ..., protocol: _Optional[_Union[Protocol, str]] = ..., state: _Optional[_Union[DeviceState, str]] = ..., last_seen: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., messages: _Optional[int] = ..., errors: _Optional[int] = ..., writes: _Optional[int] = ..., points: _Optional[_Iterable[str]] = ..., state_since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListConsumersRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class ListConsumersResponse(_message.Message):
    __slots__ = ["consumers"]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    consumers: _containers.RepeatedCompositeFieldContainer[Consumer]
    def __init__(self, consumers: _Optional[_Iterable[_Union[Consumer, _Mapping]]] = ...) -> None: ...

class ListDevicesRequest(_message.Message):
    __slots__ = ["devices", "protocols"]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedScalarFieldContainer[str]
    protocols: _containers.RepeatedScalarFieldContainer[Protocol]
    def __init__(self, devices: _Optional[_Iterable[str]] = ..., protocols: _Optional[_Iterable[_Union[Protocol, str]]] = ...) -> None: ...

class ListDevicesResponse(_message.Message):
    __slots__ = ["devices"]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    def __init__(self, devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ["device", "gateway_time", "labels", "point", "priority", "protocol", "quality", "sequence", "source_time", "unit", "value"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_TIME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TIME_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    device: str
    gateway_time: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    point: str
    priority: Priority
    protocol: Protocol
    quality: Quality
    sequence: int
    source_time: _timestamp_pb2.Timestamp
    unit: str
    value: Value
    def __init__(self, sequence: _Optional[int] = ..., device: _Optional[str] = ..., point: _Optional[str] = ..., protocol: _Optional[_Union[Protocol, str]] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., quality: _Optional[_Union[Quality, str]] = ..., source_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., gateway_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., unit: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., priority: _Optional[_Union[Priority, str]] = ...) -> None: ...

class PointRef(_message.Message):
    __slots__ = ["device", "point"]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    device: str
    point: str
    def __init__(self, device: _Optional[str] = ..., point: _Optional[str] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "points", "source"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    points: _containers.RepeatedCompositeFieldContainer[PointRef]
    source: ReadSource
    def __init__(self, points: _Optional[_Iterable[_Union[PointRef, _Mapping]]] = ..., source: _Optional[_Union[ReadSource, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ReadResponse(_message.Message):
    __slots__ = ["messages", "next_page_token"]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    next_page_token: str
    def __init__(self, messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ["after_sequence", "budget", "consumer", "devices", "from_earliest", "labels", "points", "protocols", "shed"]
    class LabelsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    FROM_EARLIEST_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    SHED_FIELD_NUMBER: _ClassVar[int]
    after_sequence: int
    budget: Budget
    consumer: str
    devices: _containers.RepeatedScalarFieldContainer[str]
    from_earliest: bool
    labels: _containers.ScalarMap[str, str]
    points: _containers.RepeatedScalarFieldContainer[str]
    protocols: _containers.RepeatedScalarFieldContainer[Protocol]
    shed: ShedPolicy
    def __init__(self, devices: _Optional[_Iterable[str]] = ..., points: _Optional[_Iterable[str]] = ..., protocols: _Optional[_Iterable[_Union[Protocol, str]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., from_earliest: bool = ..., after_sequence: _Optional[int] = ..., consumer: _Optional[str] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., shed: _Optional[_Union[ShedPolicy, str]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ["bool_value", "bytes_value", "double_value", "int_value", "string_value", "uint_value"]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    UINT_VALUE_FIELD_NUMBER: _ClassVar[int]
    bool_value: bool
    bytes_value: bytes
    double_value: float
    int_value: int
    string_value: str
    uint_value: int
    def __init__(self, double_value: _Optional[float] = ..., int_value: _Optional[int] = ..., uint_value: _Optional[int] = ..., bool_value: bool = ..., string_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ["device", "point", "request_id", "value"]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    device: str
    point: str
    request_id: str
    value: Value
    def __init__(self, device: _Optional[str] = ..., point: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class WriteResponse(_message.Message):
    __slots__ = ["code", "device", "error", "point", "request_id"]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    code: int
    device: str
    error: str
    point: str
    request_id: str
    def __init__(self, device: _Optional[str] = ..., point: _Optional[str] = ..., request_id: _Optional[str] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Quality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DeviceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ShedPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ReadSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
