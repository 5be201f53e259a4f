from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sluice.common.v1 import common_pb2 as _common_pb2
from sluice.common.v1 import errors_pb2 as _errors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
EXECUTION_TYPE_MANUAL: ExecutionType
EXECUTION_TYPE_SCHEDULED: ExecutionType
EXECUTION_TYPE_UNSPECIFIED: ExecutionType
JOB_KIND_COPY: JobKind
JOB_KIND_NOOP: JobKind
JOB_KIND_POPULATEVIEW: JobKind
JOB_KIND_UNSPECIFIED: JobKind
JOB_STATUS_CANCELLED: JobStatus
JOB_STATUS_CANCELLING: JobStatus
JOB_STATUS_DONE: JobStatus
JOB_STATUS_ERROR: JobStatus
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_WAITING: JobStatus
JOB_STATUS_WORKING: JobStatus

class CancelJobRequest(_message.Message):
    __slots__ = ["id", "request_id", "workspace"]
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CopySchedule(_message.Message):
    __slots__ = ["cron", "last_tick", "next_tick", "paused", "pipe", "workspace"]
    CRON_FIELD_NUMBER: _ClassVar[int]
    LAST_TICK_FIELD_NUMBER: _ClassVar[int]
    NEXT_TICK_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    cron: str
    last_tick: _timestamp_pb2.Timestamp
    next_tick: _timestamp_pb2.Timestamp
    paused: bool
    pipe: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., cron: _Optional[str] = ..., paused: bool = ..., last_tick: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_tick: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ["id", "workspace"]
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetWorkspaceLimitsRequest(_message.Message):
    __slots__ = ["workspace"]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    workspace: str
    def __init__(self, workspace: _Optional[str] = ...) -> None: ...

class GetWorkspaceLimitsResponse(_message.Message):
    __slots__ = ["limits"]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: WorkspaceLimits
    def __init__(self, limits: _Optional[_Union[WorkspaceLimits, _Mapping]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ["create_time", "error", "execution_type", "finish_time", "id", "job_timestamp", "kind", "max_execution_time", "mode", "node", "parameters", "pipe", "populate", "progress", "request_id", "start_time", "status", "target_datasource", "update_time", "waiting_reason", "workspace"]
    class ParametersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_TYPE_FIELD_NUMBER: _ClassVar[int]
    FINISH_TIME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    POPULATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WAITING_REASON_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    error: JobError
    execution_type: ExecutionType
    finish_time: _timestamp_pb2.Timestamp
    id: str
    job_timestamp: _timestamp_pb2.Timestamp
    kind: JobKind
    max_execution_time: _duration_pb2.Duration
    mode: _common_pb2.CopyMode
    node: str
    parameters: _containers.ScalarMap[str, str]
    pipe: str
    populate: PopulateOptions
    progress: JobProgress
    request_id: str
    start_time: _timestamp_pb2.Timestamp
    status: JobStatus
    target_datasource: str
    update_time: _timestamp_pb2.Timestamp
    waiting_reason: str
    workspace: str
    def __init__(self, id: _Optional[str] = ..., workspace: _Optional[str] = ..., kind: _Optional[_Union[JobKind, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., finish_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., pipe: _Optional[str] = ..., node: _Optional[str] = ..., target_datasource: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., job_timestamp: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., execution_type: _Optional[_Union[ExecutionType, str]] = ..., mode: _Optional[_Union[_common_pb2.CopyMode, str]] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., error: _Optional[_Union[JobError, _Mapping]] = ..., waiting_reason: _Optional[str] = ..., max_execution_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., populate: _Optional[_Union[PopulateOptions, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class JobError(_message.Message):
    __slots__ = ["clickhouse_code", "message", "reason"]
    CLICKHOUSE_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    clickhouse_code: int
    message: str
    reason: _errors_pb2.ErrorReason
    def __init__(self, message: _Optional[str] = ..., clickhouse_code: _Optional[int] = ..., reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ["partitions_done", "partitions_total", "statistics", "steps_done", "steps_total"]
    PARTITIONS_DONE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    partitions_done: int
    partitions_total: int
    statistics: _common_pb2.Statistics
    steps_done: int
    steps_total: int
    def __init__(self, steps_total: _Optional[int] = ..., steps_done: _Optional[int] = ..., statistics: _Optional[_Union[_common_pb2.Statistics, _Mapping]] = ..., partitions_total: _Optional[int] = ..., partitions_done: _Optional[int] = ...) -> None: ...

class ListCopySchedulesRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "workspace"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCopySchedulesResponse(_message.Message):
    __slots__ = ["next_page_token", "schedules"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    schedules: _containers.RepeatedCompositeFieldContainer[CopySchedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[CopySchedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ["kinds", "page_size", "page_token", "pipe", "since", "statuses", "workspace"]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    kinds: _containers.RepeatedScalarFieldContainer[JobKind]
    page_size: int
    page_token: str
    pipe: str
    since: _timestamp_pb2.Timestamp
    statuses: _containers.RepeatedScalarFieldContainer[JobStatus]
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[JobStatus, str]]] = ..., kinds: _Optional[_Iterable[_Union[JobKind, str]]] = ..., pipe: _Optional[str] = ..., since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ["jobs", "next_page_token"]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseCopyScheduleRequest(_message.Message):
    __slots__ = ["pipe", "request_id", "workspace"]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    pipe: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class PauseCopyScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: CopySchedule
    def __init__(self, schedule: _Optional[_Union[CopySchedule, _Mapping]] = ...) -> None: ...

class PopulateOptions(_message.Message):
    __slots__ = ["cutover_column", "cutover_snapshot", "cutover_value", "only_this_view", "sql_condition", "truncate"]
    CUTOVER_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CUTOVER_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CUTOVER_VALUE_FIELD_NUMBER: _ClassVar[int]
    ONLY_THIS_VIEW_FIELD_NUMBER: _ClassVar[int]
    SQL_CONDITION_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    cutover_column: str
    cutover_snapshot: bool
    cutover_value: str
    only_this_view: bool
    sql_condition: str
    truncate: bool
    def __init__(self, truncate: bool = ..., sql_condition: _Optional[str] = ..., only_this_view: bool = ..., cutover_column: _Optional[str] = ..., cutover_value: _Optional[str] = ..., cutover_snapshot: bool = ...) -> None: ...

class PopulateRequest(_message.Message):
    __slots__ = ["max_execution_time", "memory_budget_bytes", "node", "options", "parallelism", "pipe", "request_id", "workspace"]
    MAX_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    max_execution_time: _duration_pb2.Duration
    memory_budget_bytes: int
    node: str
    options: PopulateOptions
    parallelism: int
    pipe: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., node: _Optional[str] = ..., options: _Optional[_Union[PopulateOptions, _Mapping]] = ..., max_execution_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., memory_budget_bytes: _Optional[int] = ..., request_id: _Optional[str] = ..., parallelism: _Optional[int] = ...) -> None: ...

class PopulateResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ResumeCopyScheduleRequest(_message.Message):
    __slots__ = ["pipe", "request_id", "workspace"]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    pipe: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ResumeCopyScheduleResponse(_message.Message):
    __slots__ = ["schedule"]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: CopySchedule
    def __init__(self, schedule: _Optional[_Union[CopySchedule, _Mapping]] = ...) -> None: ...

class RunCopyRequest(_message.Message):
    __slots__ = ["job_timestamp", "max_execution_time", "mode", "parameters", "pipe", "request_id", "workspace"]
    class ParametersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    MAX_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    job_timestamp: _timestamp_pb2.Timestamp
    max_execution_time: _duration_pb2.Duration
    mode: _common_pb2.CopyMode
    parameters: _containers.ScalarMap[str, str]
    pipe: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., job_timestamp: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., mode: _Optional[_Union[_common_pb2.CopyMode, str]] = ..., max_execution_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RunCopyResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class RunNoopJobRequest(_message.Message):
    __slots__ = ["max_execution_time", "parameters", "request_id", "workspace"]
    class ParametersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MAX_EXECUTION_TIME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    max_execution_time: _duration_pb2.Duration
    parameters: _containers.ScalarMap[str, str]
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., max_execution_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class RunNoopJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class SetWorkspaceLimitsRequest(_message.Message):
    __slots__ = ["limits", "request_id", "workspace"]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    limits: WorkspaceLimits
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., limits: _Optional[_Union[WorkspaceLimits, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SetWorkspaceLimitsResponse(_message.Message):
    __slots__ = ["limits"]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    limits: WorkspaceLimits
    def __init__(self, limits: _Optional[_Union[WorkspaceLimits, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ["id", "workspace"]
    ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ["job"]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WorkspaceLimits(_message.Message):
    __slots__ = ["copy_concurrency"]
    COPY_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    copy_concurrency: int
    def __init__(self, copy_concurrency: _Optional[int] = ...) -> None: ...

class JobKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class ExecutionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
