from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from sluice.catalog.v1 import tokens_pb2 as _tokens_pb2
from sluice.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
NODE_TYPE_COPY: NodeType
NODE_TYPE_ENDPOINT: NodeType
NODE_TYPE_MATERIALIZED: NodeType
NODE_TYPE_SINK: NodeType
NODE_TYPE_STANDARD: NodeType
NODE_TYPE_UNSPECIFIED: NodeType
RESOURCE_TYPE_DATASOURCE: ResourceType
RESOURCE_TYPE_PIPE: ResourceType
RESOURCE_TYPE_UNSPECIFIED: ResourceType

class CreateWorkspaceRequest(_message.Message):
    __slots__ = ["name", "request_id"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateWorkspaceResponse(_message.Message):
    __slots__ = ["admin_token", "created", "workspace"]
    ADMIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    admin_token: str
    created: bool
    workspace: Workspace
    def __init__(self, workspace: _Optional[_Union[Workspace, _Mapping]] = ..., admin_token: _Optional[str] = ..., created: bool = ...) -> None: ...

class CutOverViewRequest(_message.Message):
    __slots__ = ["column", "job_id", "node", "pipe", "tables", "value", "workspace"]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    column: str
    job_id: str
    node: str
    pipe: str
    tables: _containers.RepeatedScalarFieldContainer[str]
    value: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., node: _Optional[str] = ..., column: _Optional[str] = ..., value: _Optional[str] = ..., job_id: _Optional[str] = ..., tables: _Optional[_Iterable[str]] = ...) -> None: ...

class CutOverViewResponse(_message.Message):
    __slots__ = ["blocks", "sql"]
    class BlocksEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.ScalarMap[str, int]
    sql: str
    def __init__(self, blocks: _Optional[_Mapping[str, int]] = ..., sql: _Optional[str] = ...) -> None: ...

class DataSource(_message.Message):
    __slots__ = ["columns", "create_statement", "description", "engine", "file_version", "id", "name", "partition_key", "path", "primary_key", "settings", "sorting_key", "tags", "ttl", "update_time", "workspace"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    CREATE_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    FILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARTITION_KEY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_KEY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    SORTING_KEY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.Column]
    create_statement: str
    description: str
    engine: str
    file_version: int
    id: str
    name: str
    partition_key: str
    path: str
    primary_key: str
    settings: str
    sorting_key: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    ttl: str
    update_time: _timestamp_pb2.Timestamp
    workspace: str
    def __init__(self, name: _Optional[str] = ..., workspace: _Optional[str] = ..., id: _Optional[str] = ..., description: _Optional[str] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.Column, _Mapping]]] = ..., engine: _Optional[str] = ..., partition_key: _Optional[str] = ..., sorting_key: _Optional[str] = ..., primary_key: _Optional[str] = ..., ttl: _Optional[str] = ..., settings: _Optional[str] = ..., create_statement: _Optional[str] = ..., path: _Optional[str] = ..., file_version: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Datafile(_message.Message):
    __slots__ = ["content", "path"]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    content: str
    path: str
    def __init__(self, path: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class DeleteDataSourceRequest(_message.Message):
    __slots__ = ["force", "name", "request_id", "workspace"]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    force: bool
    name: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ..., force: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteDataSourceResponse(_message.Message):
    __slots__ = ["removed"]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[_Iterable[str]] = ...) -> None: ...

class DeletePipeRequest(_message.Message):
    __slots__ = ["name", "request_id", "workspace"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeletePipeResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class DeleteWorkspaceRequest(_message.Message):
    __slots__ = ["force", "name", "request_id"]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    force: bool
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., force: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteWorkspaceResponse(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class FileVersion(_message.Message):
    __slots__ = ["content", "create_time", "deleted", "version"]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    content: str
    create_time: _timestamp_pb2.Timestamp
    deleted: bool
    version: int
    def __init__(self, version: _Optional[int] = ..., content: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., deleted: bool = ...) -> None: ...

class GetDataSourceRequest(_message.Message):
    __slots__ = ["name", "workspace"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetDataSourceResponse(_message.Message):
    __slots__ = ["datasource"]
    DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    datasource: DataSource
    def __init__(self, datasource: _Optional[_Union[DataSource, _Mapping]] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ["resource", "workspace"]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    resource: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., resource: _Optional[str] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ["edges", "nodes", "topological_order"]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGICAL_ORDER_FIELD_NUMBER: _ClassVar[int]
    edges: _containers.RepeatedCompositeFieldContainer[GraphEdge]
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNode]
    topological_order: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[GraphNode, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[GraphEdge, _Mapping]]] = ..., topological_order: _Optional[_Iterable[str]] = ...) -> None: ...

class GetPipeRequest(_message.Message):
    __slots__ = ["name", "workspace"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetPipeResponse(_message.Message):
    __slots__ = ["pipe"]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    pipe: Pipe
    def __init__(self, pipe: _Optional[_Union[Pipe, _Mapping]] = ...) -> None: ...

class GetWorkspaceRequest(_message.Message):
    __slots__ = ["name"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetWorkspaceResponse(_message.Message):
    __slots__ = ["workspace"]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    workspace: Workspace
    def __init__(self, workspace: _Optional[_Union[Workspace, _Mapping]] = ...) -> None: ...

class GraphEdge(_message.Message):
    __slots__ = ["downstream", "kind", "upstream"]
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = []
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    KIND_COPIES: GraphEdge.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    KIND_MATERIALIZES: GraphEdge.Kind
    KIND_READS: GraphEdge.Kind
    KIND_TRIGGERS: GraphEdge.Kind
    KIND_UNSPECIFIED: GraphEdge.Kind
    UPSTREAM_FIELD_NUMBER: _ClassVar[int]
    downstream: str
    kind: GraphEdge.Kind
    upstream: str
    def __init__(self, upstream: _Optional[str] = ..., downstream: _Optional[str] = ..., kind: _Optional[_Union[GraphEdge.Kind, str]] = ...) -> None: ...

class GraphNode(_message.Message):
    __slots__ = ["id", "name", "node_type", "resource_type"]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    node_type: NodeType
    resource_type: ResourceType
    def __init__(self, name: _Optional[str] = ..., resource_type: _Optional[_Union[ResourceType, str]] = ..., node_type: _Optional[_Union[NodeType, str]] = ..., id: _Optional[str] = ...) -> None: ...

class ListDataSourcesRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "workspace"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDataSourcesResponse(_message.Message):
    __slots__ = ["datasources", "next_page_token"]
    DATASOURCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    datasources: _containers.RepeatedCompositeFieldContainer[DataSource]
    next_page_token: str
    def __init__(self, datasources: _Optional[_Iterable[_Union[DataSource, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListFileVersionsRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "path", "workspace"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    path: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., path: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListFileVersionsResponse(_message.Message):
    __slots__ = ["next_page_token", "versions"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    versions: _containers.RepeatedCompositeFieldContainer[FileVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[FileVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPipesRequest(_message.Message):
    __slots__ = ["page_size", "page_token", "workspace"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPipesResponse(_message.Message):
    __slots__ = ["next_page_token", "pipes"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PIPES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    pipes: _containers.RepeatedCompositeFieldContainer[Pipe]
    def __init__(self, pipes: _Optional[_Iterable[_Union[Pipe, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListWorkspacesRequest(_message.Message):
    __slots__ = ["page_size", "page_token"]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkspacesResponse(_message.Message):
    __slots__ = ["next_page_token", "workspaces"]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    next_page_token: str
    workspaces: _containers.RepeatedCompositeFieldContainer[Workspace]
    def __init__(self, workspaces: _Optional[_Iterable[_Union[Workspace, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ["copy_mode", "copy_schedule", "copy_token", "dependencies", "description", "name", "parameters", "sql", "target_datasource", "type"]
    COPY_MODE_FIELD_NUMBER: _ClassVar[int]
    COPY_SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    COPY_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    TARGET_DATASOURCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    copy_mode: _common_pb2.CopyMode
    copy_schedule: str
    copy_token: str
    dependencies: _containers.RepeatedScalarFieldContainer[str]
    description: str
    name: str
    parameters: _containers.RepeatedCompositeFieldContainer[Parameter]
    sql: str
    target_datasource: str
    type: NodeType
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., sql: _Optional[str] = ..., type: _Optional[_Union[NodeType, str]] = ..., target_datasource: _Optional[str] = ..., copy_schedule: _Optional[str] = ..., copy_mode: _Optional[_Union[_common_pb2.CopyMode, str]] = ..., parameters: _Optional[_Iterable[_Union[Parameter, _Mapping]]] = ..., dependencies: _Optional[_Iterable[str]] = ..., copy_token: _Optional[str] = ...) -> None: ...

class Parameter(_message.Message):
    __slots__ = ["default_value", "description", "has_default", "name", "required", "type"]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HAS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    default_value: str
    description: str
    has_default: bool
    name: str
    required: bool
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[str] = ..., has_default: bool = ..., required: bool = ..., description: _Optional[str] = ...) -> None: ...

class Pipe(_message.Message):
    __slots__ = ["description", "file_version", "id", "name", "nodes", "path", "tags", "type", "update_time", "workspace"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    FILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    description: str
    file_version: int
    id: str
    name: str
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    path: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    type: NodeType
    update_time: _timestamp_pb2.Timestamp
    workspace: str
    def __init__(self, name: _Optional[str] = ..., workspace: _Optional[str] = ..., id: _Optional[str] = ..., description: _Optional[str] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., type: _Optional[_Union[NodeType, str]] = ..., path: _Optional[str] = ..., file_version: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., update_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PlanAction(_message.Message):
    __slots__ = ["kind", "name", "reason", "resource_type", "statements"]
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = []
    KIND_ALTER: PlanAction.Kind
    KIND_CREATE: PlanAction.Kind
    KIND_DELETE: PlanAction.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    KIND_NONE: PlanAction.Kind
    KIND_RECREATE: PlanAction.Kind
    KIND_UNSPECIFIED: PlanAction.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    kind: PlanAction.Kind
    name: str
    reason: str
    resource_type: ResourceType
    statements: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, kind: _Optional[_Union[PlanAction.Kind, str]] = ..., resource_type: _Optional[_Union[ResourceType, str]] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ..., statements: _Optional[_Iterable[str]] = ...) -> None: ...

class PlanPopulateRequest(_message.Message):
    __slots__ = ["cutover_column", "cutover_snapshot", "cutover_value", "node", "pipe", "sql_condition", "workspace"]
    CUTOVER_COLUMN_FIELD_NUMBER: _ClassVar[int]
    CUTOVER_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CUTOVER_VALUE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    SQL_CONDITION_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    cutover_column: str
    cutover_snapshot: bool
    cutover_value: str
    node: str
    pipe: str
    sql_condition: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., node: _Optional[str] = ..., sql_condition: _Optional[str] = ..., cutover_column: _Optional[str] = ..., cutover_value: _Optional[str] = ..., cutover_snapshot: bool = ...) -> None: ...

class PlanPopulateResponse(_message.Message):
    __slots__ = ["condition", "node", "partitions", "source", "sql_condition", "target"]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SQL_CONDITION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    condition: str
    node: str
    partitions: _containers.RepeatedCompositeFieldContainer[PopulatePartition]
    source: str
    sql_condition: str
    target: str
    def __init__(self, node: _Optional[str] = ..., target: _Optional[str] = ..., source: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[PopulatePartition, _Mapping]]] = ..., sql_condition: _Optional[str] = ..., condition: _Optional[str] = ...) -> None: ...

class PopulatePartition(_message.Message):
    __slots__ = ["bytes", "id", "rows"]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    id: str
    rows: int
    def __init__(self, id: _Optional[str] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ["dry_run", "files", "force", "prune", "request_id", "variables", "workspace"]
    class VariablesEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    PRUNE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    files: _containers.RepeatedCompositeFieldContainer[Datafile]
    force: bool
    prune: bool
    request_id: str
    variables: _containers.ScalarMap[str, str]
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., files: _Optional[_Iterable[_Union[Datafile, _Mapping]]] = ..., dry_run: bool = ..., force: bool = ..., prune: bool = ..., variables: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ["actions", "applied", "new_tokens", "warnings"]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[PlanAction]
    applied: bool
    new_tokens: _containers.RepeatedCompositeFieldContainer[_tokens_pb2.IssuedToken]
    warnings: _containers.RepeatedCompositeFieldContainer[_common_pb2.Diagnostic]
    def __init__(self, actions: _Optional[_Iterable[_Union[PlanAction, _Mapping]]] = ..., applied: bool = ..., warnings: _Optional[_Iterable[_Union[_common_pb2.Diagnostic, _Mapping]]] = ..., new_tokens: _Optional[_Iterable[_Union[_tokens_pb2.IssuedToken, _Mapping]]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ["max_rows", "sql", "timeout", "workspace"]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    max_rows: int
    sql: str
    timeout: _duration_pb2.Duration
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., sql: _Optional[str] = ..., max_rows: _Optional[int] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ["columns", "rows", "statistics", "truncated"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STATISTICS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.Column]
    rows: _containers.RepeatedCompositeFieldContainer[_struct_pb2.ListValue]
    statistics: _common_pb2.Statistics
    truncated: bool
    def __init__(self, columns: _Optional[_Iterable[_Union[_common_pb2.Column, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_struct_pb2.ListValue, _Mapping]]] = ..., statistics: _Optional[_Union[_common_pb2.Statistics, _Mapping]] = ..., truncated: bool = ...) -> None: ...

class RenderNodeRequest(_message.Message):
    __slots__ = ["check", "job_timestamp", "node", "parameters", "pipe", "without_cutover", "workspace"]
    class ParametersEntry(_message.Message):
        __slots__ = ["key", "value"]
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHECK_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PIPE_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_CUTOVER_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    check: bool
    job_timestamp: _timestamp_pb2.Timestamp
    node: str
    parameters: _containers.ScalarMap[str, str]
    pipe: str
    without_cutover: bool
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., pipe: _Optional[str] = ..., node: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., job_timestamp: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., check: bool = ..., without_cutover: bool = ...) -> None: ...

class RenderNodeResponse(_message.Message):
    __slots__ = ["columns", "file_version", "reads", "sql"]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    FILE_VERSION_FIELD_NUMBER: _ClassVar[int]
    READS_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_common_pb2.Column]
    file_version: int
    reads: _containers.RepeatedScalarFieldContainer[str]
    sql: str
    def __init__(self, sql: _Optional[str] = ..., file_version: _Optional[int] = ..., reads: _Optional[_Iterable[str]] = ..., columns: _Optional[_Iterable[_Union[_common_pb2.Column, _Mapping]]] = ...) -> None: ...

class TruncateDataSourceRequest(_message.Message):
    __slots__ = ["cascade", "name", "request_id", "workspace"]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKSPACE_FIELD_NUMBER: _ClassVar[int]
    cascade: bool
    name: str
    request_id: str
    workspace: str
    def __init__(self, workspace: _Optional[str] = ..., name: _Optional[str] = ..., cascade: bool = ..., request_id: _Optional[str] = ...) -> None: ...

class TruncateDataSourceResponse(_message.Message):
    __slots__ = ["truncated"]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    truncated: _containers.RepeatedCompositeFieldContainer[TruncatedDataSource]
    def __init__(self, truncated: _Optional[_Iterable[_Union[TruncatedDataSource, _Mapping]]] = ...) -> None: ...

class TruncatedDataSource(_message.Message):
    __slots__ = ["name", "rows"]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    name: str
    rows: int
    def __init__(self, name: _Optional[str] = ..., rows: _Optional[int] = ...) -> None: ...

class Workspace(_message.Message):
    __slots__ = ["create_time", "database", "name"]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    create_time: _timestamp_pb2.Timestamp
    database: str
    name: str
    def __init__(self, name: _Optional[str] = ..., database: _Optional[str] = ..., create_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResourceType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class NodeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
