from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EVENT_TYPE_ALTER: EventType
EVENT_TYPE_APPEND: EventType
EVENT_TYPE_APPEND_HFI: EventType
EVENT_TYPE_APPEND_KAFKA: EventType
EVENT_TYPE_COPY: EventType
EVENT_TYPE_CREATE: EventType
EVENT_TYPE_DELETE: EventType
EVENT_TYPE_DELETE_DATA: EventType
EVENT_TYPE_POPULATEVIEW: EventType
EVENT_TYPE_POPULATEVIEW_QUEUED: EventType
EVENT_TYPE_RENAME: EventType
EVENT_TYPE_REPLACE: EventType
EVENT_TYPE_TRUNCATE: EventType
EVENT_TYPE_UNSPECIFIED: EventType
RESULT_CANCELLED: Result
RESULT_ERROR: Result
RESULT_OK: Result
RESULT_UNSPECIFIED: Result

class EventFilter(_message.Message):
    __slots__ = ["datasource", "event_types", "job_id", "pipe", "results", "since", "until", "workspace"]
    DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    datasource: str
    event_types: _containers.RepeatedScalarFieldContainer[EventType]
    job_id: str
    pipe: str
    results: _containers.RepeatedScalarFieldContainer[Result]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., datasource: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[EventType, str]]] = ..., results: _Optional[_Iterable[_Union[Result, str]]] = ..., job_id: _Optional[str] = ..., pipe: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class OpsEvent(_message.Message):
    __slots__ = ["blocks_ids", "cpu_time", "datasource_id", "datasource_name", "elapsed_time", "error", "event_type", "id", "import_id", "job_id", "memory_usage", "operation_id", "options", "pipe_id", "pipe_name", "read_bytes", "read_rows", "release", "request_id", "resource_tags", "result", "rows", "rows_quarantine", "timestamp", "workspace", "written_bytes", "written_bytes_quarantine", "written_rows", "written_rows_quarantine"]
    class OptionsEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BLOCKS_IDS_FIELD_NUMBER: _ClassVar[int]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PIPE_ID_FIELD_NUMBER: _ClassVar[int]
    PIPE_NAME_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ROWS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TAGS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROWS_QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BYTES_QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_ROWS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_ROWS_QUARANTINE_FIELD_NUMBER: _ClassVar[int]
    blocks_ids: _containers.RepeatedScalarFieldContainer[str]
    cpu_time: _duration_pb2.Duration
    datasource_id: str
    datasource_name: str
    elapsed_time: _duration_pb2.Duration
    error: str
    event_type: EventType
    id: str
    import_id: str
    job_id: str
    memory_usage: int
    operation_id: str
    options: _containers.ScalarMap[str, str]
    pipe_id: str
    pipe_name: str
    read_bytes: int
    read_rows: int
    release: str
    request_id: str
    resource_tags: _containers.RepeatedScalarFieldContainer[str]
    result: Result
    rows: int
    rows_quarantine: int
    timestamp: _timestamp_pb2.Timestamp
    workspace: str
    written_bytes: int
    written_bytes_quarantine: int
    written_rows: int
    written_rows_quarantine: int
    def __init__(self, id: _Optional[str] = ..., workspace: _Optional[str] = ..., timestamp: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., event_type: _Optional[_Union[EventType, str]] = ..., datasource_id: _Optional[str] = ..., datasource_name: _Optional[str] = ..., result: _Optional[_Union[Result, str]] = ..., elapsed_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., error: _Optional[str] = ..., request_id: _Optional[str] = ..., import_id: _Optional[str] = ..., job_id: _Optional[str] = ..., rows: _Optional[int] = ..., rows_quarantine: _Optional[int] = ..., blocks_ids: _Optional[_Iterable[str]] = ..., operation_id: _Optional[str] = ..., read_rows: _Optional[int] = ..., cpu_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., memory_usage: _Optional[int] = ..., read_bytes: _Optional[int] = ..., written_rows: _Optional[int] = ..., written_bytes: _Optional[int] = ..., written_rows_quarantine: _Optional[int] = ..., written_bytes_quarantine: _Optional[int] = ..., pipe_id: _Optional[str] = ..., pipe_name: _Optional[str] = ..., release: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., resource_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryEventsRequest(_message.Message):
    __slots__ = ["filter", "page_size", "page_token"]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: EventFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryEventsResponse(_message.Message):
    __slots__ = ["events", "next_page_token"]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[OpsEvent]
    next_page_token: str
    def __init__(self, events: _Optional[_Iterable[_Union[OpsEvent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TailEventsRequest(_message.Message):
    __slots__ = ["backlog", "filter"]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    backlog: _duration_pb2.Duration
    filter: EventFilter
    def __init__(self, filter: _Optional[_Union[EventFilter, _Mapping]] = ..., backlog: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TailEventsResponse(_message.Message):
    __slots__ = ["event"]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: OpsEvent
    def __init__(self, event: _Optional[_Union[OpsEvent, _Mapping]] = ...) -> None: ...

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
