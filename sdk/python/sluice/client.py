"""Client: a connection to Sluice and the calls programs make around the generated stubs."""

import os
import time
import uuid

import grpc

from sluice.catalog.v1 import catalog_pb2, catalog_pb2_grpc, tokens_pb2, tokens_pb2_grpc
from sluice.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from sluice.opslog.v1 import opslog_pb2, opslog_pb2_grpc
from sluice.scheduler.v1 import scheduler_pb2, scheduler_pb2_grpc
from sluice.errors import SluiceError

_FINAL = {scheduler_pb2.JOB_STATUS_DONE, scheduler_pb2.JOB_STATUS_ERROR, scheduler_pb2.JOB_STATUS_CANCELLED}


class JobFailedError(Exception):
    """A job that ended ERROR or CANCELLED; .job is the final state."""

    def __init__(self, job):
        super().__init__(f"job {job.id} ended {scheduler_pb2.JobStatus.Name(job.status)}: {job.error.message}")
        self.job = job


def read_datafiles(path):
    """The .datasource, .pipe and .incl files under path, with paths relative to it."""
    files = []
    for root, _, names in os.walk(path):
        for name in sorted(names):
            if name.endswith((".datasource", ".pipe", ".incl")):
                full = os.path.join(root, name)
                with open(full, encoding="utf-8") as f:
                    files.append(catalog_pb2.Datafile(path=os.path.relpath(full, path).replace(os.sep, "/"), content=f.read()))
    if not files:
        raise ValueError(f"no .datasource, .pipe or .incl file under {path}")
    return sorted(files, key=lambda f: f.path)


def new_request_id():
    """A new idempotency key (AIP-155)."""
    return str(uuid.uuid4())


class Client:
    """A connection to Sluice at address (host:port).

    token is sent with every call (authorization: Bearer <token>); workspace fills requests that
    name none (default: the token's; the operator token must name one); credentials
    (grpc.ssl_channel_credentials()) connects with TLS; retries is how often a retryable failure
    (UNAVAILABLE, REQUEST_IN_PROGRESS) is tried again. The generated stubs are .catalog,
    .tokens, .scheduler, .ops_log and .ingest; call them with metadata=client.metadata (the token).
    """

    def __init__(self, address, token=None, workspace="", credentials=None, retries=4):
        self._channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)
        self.tokens = tokens_pb2_grpc.TokenServiceStub(self._channel)
        self.scheduler = scheduler_pb2_grpc.SchedulerServiceStub(self._channel)
        self.ops_log = opslog_pb2_grpc.OpsLogServiceStub(self._channel)
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self._channel)
        self.workspace = workspace
        self.retries = retries

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout=60):
        """Calls method until it succeeds or fails for good; errors are SluiceError."""
        for attempt in range(self.retries + 1):
            try:
                return method(request, metadata=self.metadata, timeout=timeout)
            except grpc.RpcError as err:
                e = SluiceError.from_rpc_error(err)
                if not e.retryable or attempt >= self.retries:
                    raise e from None
                time.sleep(max(e.retry_delay, 0.2 * 2**attempt))
        raise AssertionError("unreachable")

    def create_workspace(self, name):
        """Creates a workspace (operator token), or returns it when it exists. The response's
        admin_token is the new workspace's admin token, shown once; retries answer the same."""
        req = catalog_pb2.CreateWorkspaceRequest(name=name, request_id=new_request_id())
        return self._call(self.catalog.CreateWorkspace, req)

    def create_token(self, name, scopes, description=""):
        """Creates a token with scopes and returns it with its secret (shown once); retries
        answer the same secret."""
        req = tokens_pb2.CreateTokenRequest(workspace=self.workspace, name=name, scopes=scopes, description=description,
                                            request_id=new_request_id())
        return self._call(self.tokens.CreateToken, req).issued

    def rotate_token(self, name):
        """Gives a token a new secret (returned once); the old one stops working. Retries rotate
        once."""
        req = tokens_pb2.RotateTokenRequest(workspace=self.workspace, name=name, request_id=new_request_id())
        return self._call(self.tokens.RotateToken, req).issued

    def revoke_token(self, name):
        """Deletes a token: it stops working everywhere within seconds."""
        req = tokens_pb2.DeleteTokenRequest(workspace=self.workspace, name=name, request_id=new_request_id())
        self._call(self.tokens.DeleteToken, req)

    def current_token(self):
        """The token this client sends: its name, workspace and scopes."""
        return self._call(self.tokens.GetCurrentToken, tokens_pb2.GetCurrentTokenRequest()).token

    def list_tokens(self):
        """The workspace's tokens by name, a page at a time (secrets are never listed)."""
        req = tokens_pb2.ListTokensRequest(workspace=self.workspace)
        while True:
            page = self._call(self.tokens.ListTokens, req)
            yield from page.tokens
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def push_dir(self, path, dry_run=False, force=False, prune=False, variables=None):
        """Pushes every datafile under path as one all-or-nothing push. A refused push raises
        SluiceError with one diagnostic per problem."""
        req = catalog_pb2.PushRequest(workspace=self.workspace, files=read_datafiles(path), dry_run=dry_run, force=force,
                                      prune=prune, variables=variables or {}, request_id=new_request_id())
        return self._call(self.catalog.Push, req, timeout=300)

    def run_copy(self, pipe, parameters=None, mode=None, job_timestamp=None, request_id=None):
        """Starts a copy; retries reuse the request id, so it starts once."""
        req = scheduler_pb2.RunCopyRequest(workspace=self.workspace, pipe=pipe, parameters=parameters or {},
                                           request_id=request_id or new_request_id())
        if mode is not None:
            req.mode = mode
        if job_timestamp is not None:
            req.job_timestamp.FromDatetime(job_timestamp)
        return self._call(self.scheduler.RunCopy, req).job

    def populate(self, pipe, node="", truncate=False, sql_condition="", request_id=None):
        """Starts a populate; retries reuse the request id."""
        req = scheduler_pb2.PopulateRequest(
            workspace=self.workspace, pipe=pipe, node=node, request_id=request_id or new_request_id(),
            options=scheduler_pb2.PopulateOptions(truncate=truncate, sql_condition=sql_condition))
        return self._call(self.scheduler.Populate, req).job

    def wait(self, job, on_progress=None, timeout=600):
        """Follows a job until it ends (on_progress sees each state); raises JobFailedError."""
        last = job
        deadline = time.monotonic() + timeout
        for attempt in range(self.retries + 1):
            try:
                for resp in self.scheduler.WatchJob(scheduler_pb2.WatchJobRequest(workspace=job.workspace, id=job.id),
                                                    metadata=self.metadata, timeout=max(deadline - time.monotonic(), 1)):
                    last = resp.job
                    if on_progress:
                        on_progress(last)
            except grpc.RpcError as err:
                e = SluiceError.from_rpc_error(err)
                if not e.retryable or attempt >= self.retries:
                    raise e from None
                time.sleep(0.2 * 2**attempt)
                continue
            if last.status in _FINAL:
                break
        if last.status != scheduler_pb2.JOB_STATUS_DONE:
            raise JobFailedError(last)
        return last

    def jobs(self, page_size=0, **filter):
        """The jobs the filter selects (statuses, kinds, pipe, since), newest first, a page at a time."""
        req = scheduler_pb2.ListJobsRequest(workspace=self.workspace, page_size=page_size, **filter)
        while True:
            page = self._call(self.scheduler.ListJobs, req)
            yield from page.jobs
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def events(self, page_size=0, **filter):
        """The ops-log events the filter selects (datasource, event_types, results, job_id, pipe,
        since, until), newest first, a page at a time."""
        req = opslog_pb2.QueryEventsRequest(filter=opslog_pb2.EventFilter(workspace=self.workspace, **filter), page_size=page_size)
        while True:
            page = self._call(self.ops_log.QueryEvents, req)
            yield from page.events
            if not page.next_page_token:
                return
            req.page_token = page.next_page_token

    def append(self, datasource, data, format=ingest_pb2.FORMAT_UNSPECIFIED, csv_header=ingest_pb2.CSV_HEADER_UNSPECIFIED, wait=True):
        """Adds rows (bytes or str: NDJSON, CSV or Parquet; larger data goes through append_file) to
        a Data Source. Rows that do not convert go to <datasource>_quarantine; a malformed request
        is refused whole, naming its line. Retries reuse the request id: the rows are written once."""
        if isinstance(data, str):
            data = data.encode()
        req = ingest_pb2.AppendRequest(workspace=self.workspace, datasource=datasource, data=data, format=format,
                                       csv_header=csv_header, wait=wait, request_id=new_request_id())
        return self._call(self.ingest.Append, req).result

    def append_file(self, datasource, path, replace=False, format=ingest_pb2.FORMAT_UNSPECIFIED,
                    csv_header=ingest_pb2.CSV_HEADER_UNSPECIFIED, wait=True):
        """Streams a file's rows into a Data Source (replace: they replace its whole content,
        atomically). The file is checked whole before any row is kept; retries send it again with
        the same request id, and its rows are written once."""
        start = ingest_pb2.AppendStart(
            workspace=self.workspace, datasource=datasource, format=format, csv_header=csv_header, wait=wait,
            mode=ingest_pb2.MODE_REPLACE if replace else ingest_pb2.MODE_APPEND, file_name=os.path.basename(path),
            request_id=new_request_id())

        def messages():
            yield ingest_pb2.AppendStreamRequest(start=start)
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    yield ingest_pb2.AppendStreamRequest(chunk=chunk)

        # Each attempt streams the file anew (messages() starts over), with the same request id.
        def send(_request, **kw):
            return self.ingest.AppendStream(messages(), **kw)

        return self._call(send, None, timeout=3600).result

    def query(self, sql):
        """A read-only query in the workspace; values are encoded as QueryResponse documents."""
        return self._call(self.catalog.Query, catalog_pb2.QueryRequest(workspace=self.workspace, sql=sql))
