from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Mapping as _Mapping, Optional as _Optional, Union as _Union

CSV_HEADER_ABSENT: CSVHeader
CSV_HEADER_AUTO: CSVHeader
CSV_HEADER_PRESENT: CSVHeader
CSV_HEADER_UNSPECIFIED: CSVHeader
DESCRIPTOR: _descriptor.FileDescriptor
FORMAT_CSV: Format
FORMAT_NDJSON: Format
FORMAT_PARQUET: Format
FORMAT_UNSPECIFIED: Format
MODE_APPEND: Mode
MODE_REPLACE: Mode
MODE_UNSPECIFIED: Mode

class AppendRequest(_message.Message):
    __slots__ = ["csv_header", "data", "datasource", "format", "request_id", "wait", "workspace"]
    CSV_HEADER_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    csv_header: CSVHeader
    data: bytes
    datasource: str
    format: Format
    request_id: str
    wait: bool
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., datasource: _Optional[str] = ..., format: _Optional[_Union[Format, str]] = ..., data: _Optional[bytes] = ..., wait: bool = ..., csv_header: _Optional[_Union[CSVHeader, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ["result"]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: AppendResult
    def __init__(self, result: _Optional[_Union[AppendResult, _Mapping]] = ...) -> None: ...

class AppendResult(_message.Message):
    __slots__ = ["bytes", "import_id", "quarantined_rows", "successful_rows"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    IMPORT_ID_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_ROWS_FIELD_NUMBER: _ClassVar[int]
    SUCCESSFUL_ROWS_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    import_id: str
    quarantined_rows: int
    successful_rows: int
    def __init__(self, successful_rows: _Optional[int] = ..., quarantined_rows: _Optional[int] = ..., import_id: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class AppendStart(_message.Message):
    __slots__ = ["csv_header", "datasource", "file_name", "format", "mode", "request_id", "wait", "workspace"]
    CSV_HEADER_FIELD_NUMBER: _ClassVar[int]
    DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    csv_header: CSVHeader
    datasource: str
    file_name: str
    format: Format
    mode: Mode
    request_id: str
    wait: bool
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., datasource: _Optional[str] = ..., format: _Optional[_Union[Format, str]] = ..., mode: _Optional[_Union[Mode, str]] = ..., csv_header: _Optional[_Union[CSVHeader, str]] = ..., wait: bool = ..., file_name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class AppendStreamRequest(_message.Message):
    __slots__ = ["chunk", "start"]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    start: AppendStart
    def __init__(self, start: _Optional[_Union[AppendStart, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class AppendStreamResponse(_message.Message):
    __slots__ = ["result"]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: AppendResult
    def __init__(self, result: _Optional[_Union[AppendResult, _Mapping]] = ...) -> None: ...

class Format(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class CSVHeader(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
