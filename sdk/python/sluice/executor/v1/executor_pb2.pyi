from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ["draining", "instance", "running", "steps_done", "steps_failed"]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FAILED_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    instance: str
    running: _containers.RepeatedCompositeFieldContainer[RunningStep]
    steps_done: int
    steps_failed: int
    def __init__(self, instance: _Optional[str] = ..., running: _Optional[_Iterable[_Union[RunningStep, _Mapping]]] = ..., steps_done: _Optional[int] = ..., steps_failed: _Optional[int] = ..., draining: bool = ...) -> None: ...

class RunningStep(_message.Message):
    __slots__ = ["attempt", "job_id", "start_time", "step_id", "workspace"]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    job_id: str
    start_time: _timestamp_pb2.Timestamp
    step_id: str
    workspace: str
    def __init__(self, job_id: _Optional[str] = ..., step_id: _Optional[str] = ..., workspace: _Optional[str] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ...) -> None: ...
