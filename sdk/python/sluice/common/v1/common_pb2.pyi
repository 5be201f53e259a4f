from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

COPY_MODE_APPEND: CopyMode
COPY_MODE_REPLACE: CopyMode
COPY_MODE_UNSPECIFIED: CopyMode
DESCRIPTOR: _descriptor.FileDescriptor
DIAGNOSTIC_CODE_CLICKHOUSE: DiagnosticCode
DIAGNOSTIC_CODE_CYCLE: DiagnosticCode
DIAGNOSTIC_CODE_INVALID: DiagnosticCode
DIAGNOSTIC_CODE_NEEDS_FORCE: DiagnosticCode
DIAGNOSTIC_CODE_REFERENCE: DiagnosticCode
DIAGNOSTIC_CODE_REFUSED: DiagnosticCode
DIAGNOSTIC_CODE_SYNTAX: DiagnosticCode
DIAGNOSTIC_CODE_TEMPLATE: DiagnosticCode
DIAGNOSTIC_CODE_UNSPECIFIED: DiagnosticCode
DIAGNOSTIC_CODE_UNSUPPORTED: DiagnosticCode

class Column(_message.Message):
    __slots__ = ["codec", "default_expression", "default_kind", "json_path", "name", "type"]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_EXPRESSION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_KIND_FIELD_NUMBER: _ClassVar[int]
    JSON_PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    codec: str
    default_expression: str
    default_kind: str
    json_path: str
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_expression: _Optional[str] = ..., default_kind: _Optional[str] = ..., codec: _Optional[str] = ..., json_path: _Optional[str] = ...) -> None: ...

class Diagnostic(_message.Message):
    __slots__ = ["clickhouse_code", "code", "message", "position", "severity"]
    class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = []
    CLICKHOUSE_CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_ERROR: Diagnostic.Severity
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_UNSPECIFIED: Diagnostic.Severity
    SEVERITY_WARNING: Diagnostic.Severity
    clickhouse_code: int
    code: DiagnosticCode
    message: str
    position: SourcePosition
    severity: Diagnostic.Severity
    def __init__(self, position: _Optional[_Union[SourcePosition, _Mapping]] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[Diagnostic.Severity, str]] = ..., code: _Optional[_Union[DiagnosticCode, str]] = ..., clickhouse_code: _Optional[int] = ...) -> None: ...

class SourcePosition(_message.Message):
    __slots__ = ["column", "file", "line"]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    column: int
    file: str
    line: int
    def __init__(self, file: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ["cpu_time", "elapsed", "memory_usage", "read_bytes", "read_rows", "written_bytes", "written_rows"]
    CPU_TIME_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USAGE_FIELD_NUMBER: _ClassVar[int]
    READ_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ROWS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_BYTES_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_ROWS_FIELD_NUMBER: _ClassVar[int]
    cpu_time: _duration_pb2.Duration
    elapsed: _duration_pb2.Duration
    memory_usage: int
    read_bytes: int
    read_rows: int
    written_bytes: int
    written_rows: int
    def __init__(self, read_rows: _Optional[int] = ..., read_bytes: _Optional[int] = ..., written_rows: _Optional[int] = ..., written_bytes: _Optional[int] = ..., elapsed: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., memory_usage: _Optional[int] = ..., cpu_time: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CopyMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class DiagnosticCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
