// Sluice client for Node.js: the v1 API through Connect's gRPC transport, with an address and a
// token, pushing a folder, starting a copy or a populate and waiting on its progress, async
// iteration over pages, retries with the request's idempotency key, and errors as SluiceError
// with their structured details.
import { randomUUID } from "node:crypto";
import { createReadStream, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative, sep } from "node:path";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { BadRequestSchema, ErrorInfoSchema, ResourceInfoSchema, RetryInfoSchema, type BadRequest_FieldViolation, type ResourceInfo } from "./gen/google/rpc/error_details_pb.js";
import { CatalogService, DatafileSchema, type CreateWorkspaceResponse, type PushResponse, type QueryResponse } from "./gen/sluice/catalog/v1/catalog_pb.js";
import { TokenService, type IssuedToken, type Token } from "./gen/sluice/catalog/v1/tokens_pb.js";
import { CSVHeader, Format, IngestService, Mode, type AppendResult, type AppendStreamRequestSchema } from "./gen/sluice/ingest/v1/ingest_pb.js";
import { DiagnosticSchema, type Diagnostic } from "./gen/sluice/common/v1/common_pb.js";
import { EventFilterSchema, OpsLogService, QueryEventsRequestSchema, type OpsEvent } from "./gen/sluice/opslog/v1/opslog_pb.js";
import {
  JobStatus,
  SchedulerService,
  type Job,
  type ListJobsRequestSchema,
  type PopulateRequestSchema,
  type RunCopyRequestSchema,
} from "./gen/sluice/scheduler/v1/scheduler_pb.js";

export * as catalog from "./gen/sluice/catalog/v1/catalog_pb.js";
export * as tokens from "./gen/sluice/catalog/v1/tokens_pb.js";
export * as common from "./gen/sluice/common/v1/common_pb.js";
export * as opslog from "./gen/sluice/opslog/v1/opslog_pb.js";
export * as ingest from "./gen/sluice/ingest/v1/ingest_pb.js";
export * as scheduler from "./gen/sluice/scheduler/v1/scheduler_pb.js";

/** Options of a SluiceClient. */
export interface ClientOptions {
  /** Sent with every call as `authorization: Bearer <token>`. */
  token?: string;
  /** Workspace of requests that name none (default: the token's; the operator token must name one). */
  workspace?: string;
  /** Tries after a retryable failure (UNAVAILABLE, REQUEST_IN_PROGRESS); default 4. */
  retries?: number;
}

/** How appended rows are read, and when the call returns. */
export interface AppendOptions {
  /** Format of the data (default: from the file name, else NDJSON). */
  format?: Format;
  /** Whether a CSV starts with a header line (default: auto). */
  csvHeader?: CSVHeader;
  /** Return once the rows are stored, before they are visible in the Data Source. */
  noWait?: boolean;
}

/** An error a Sluice call returned, with its details (proto/sluice/common/v1/errors.proto). */
export class SluiceError extends Error {
  /** gRPC code. */
  readonly code: Code;
  /** Stable reason, for example "NOT_FOUND" or "INVALID_DATAFILE". */
  readonly reason: string;
  /** ErrorInfo metadata, for example job_id or clickhouse_code. */
  readonly metadata: Record<string, string>;
  /** The request fields at fault. */
  readonly fieldViolations: BadRequest_FieldViolation[];
  /** Datafile problems, each with file, line, column and code. */
  readonly diagnostics: Diagnostic[];
  /** What was not found, or exists. */
  readonly resource?: ResourceInfo;
  /** Milliseconds to wait before retrying; undefined when a retry will not help. */
  readonly retryDelayMs?: number;

  constructor(err: ConnectError) {
    super(err.rawMessage);
    this.name = "SluiceError";
    this.code = err.code;
    const info = err.findDetails(ErrorInfoSchema)[0];
    this.reason = info?.reason ?? Code[err.code];
    this.metadata = info?.metadata ?? {};
    this.fieldViolations = err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
    this.diagnostics = err.findDetails(DiagnosticSchema);
    this.resource = err.findDetails(ResourceInfoSchema)[0];
    const retry = err.findDetails(RetryInfoSchema)[0];
    if (retry?.retryDelay) {
      this.retryDelayMs = Number(retry.retryDelay.seconds) * 1000 + retry.retryDelay.nanos / 1e6;
    } else if (err.code === Code.Unavailable) {
      this.retryDelayMs = 200;
    }
  }

  /** Whether the same request may succeed later. */
  get retryable(): boolean {
    return this.retryDelayMs !== undefined;
  }
}

/** A job that ended ERROR or CANCELLED. */
export class JobFailedError extends Error {
  constructor(readonly job: Job) {
    super(`job ${job.id} ended ${JobStatus[job.status]}: ${job.error?.message ?? ""}`);
    this.name = "JobFailedError";
  }
}

function toSluiceError(err: unknown): unknown {
  return err instanceof ConnectError ? new SluiceError(err) : err;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads the .datasource, .pipe and .incl files under dir, paths relative to it. */
export function readDatafiles(dir: string) {
  const out: { path: string; content: string }[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(datasource|pipe|incl)$/.test(name)) out.push({ path: relative(dir, p).split(sep).join("/"), content: readFileSync(p, "utf8") });
    }
  };
  walk(dir);
  if (out.length === 0) throw new Error(`no .datasource, .pipe or .incl file under ${dir}`);
  return out.map((f) => create(DatafileSchema, f));
}

/** A connection to Sluice. */
export class SluiceClient {
  readonly catalog: Client<typeof CatalogService>;
  readonly tokens: Client<typeof TokenService>;
  readonly scheduler: Client<typeof SchedulerService>;
  readonly opsLog: Client<typeof OpsLogService>;
  readonly ingest: Client<typeof IngestService>;
  workspace: string;
  private readonly retries: number;

  /** address is host:port, or a URL (http:// for plaintext, https:// for TLS). */
  constructor(address: string, options: ClientOptions = {}) {
    const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
    const interceptors: Interceptor[] = [];
    if (options.token) {
      const token = options.token;
      interceptors.push((next) => async (req) => {
        req.header.set("authorization", `Bearer ${token}`);
        return next(req);
      });
    }
    const transport = createGrpcTransport({ baseUrl, interceptors });
    this.catalog = createClient(CatalogService, transport);
    this.tokens = createClient(TokenService, transport);
    this.scheduler = createClient(SchedulerService, transport);
    this.opsLog = createClient(OpsLogService, transport);
    this.ingest = createClient(IngestService, transport);
    this.workspace = options.workspace ?? "";
    this.retries = options.retries ?? 4;
  }

  /** Runs call until it succeeds or fails for good; errors are SluiceError. */
  private async retry<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        const e = toSluiceError(err);
        if (!(e instanceof SluiceError) || !e.retryable || attempt >= this.retries) throw e;
        await sleep(Math.max(e.retryDelayMs ?? 0, 200 * 2 ** attempt));
      }
    }
  }

  /** A new idempotency key (AIP-155). */
  static newRequestId(): string {
    return randomUUID();
  }

  /**
   * Creates a workspace (operator token), or returns it when it exists. The response holds the
   * new workspace's admin token, shown once; retries answer the same one.
   */
  async createWorkspace(name: string): Promise<CreateWorkspaceResponse> {
    const requestId = randomUUID();
    return this.retry(() => this.catalog.createWorkspace({ name, requestId }));
  }

  /** Creates a token with scopes; its secret is shown once. Retries answer the same secret. */
  async createToken(name: string, scopes: string[], description = ""): Promise<IssuedToken> {
    const req = { workspace: this.workspace, name, scopes, description, requestId: randomUUID() };
    const issued = (await this.retry(() => this.tokens.createToken(req))).issued;
    if (!issued) throw new Error("CreateToken returned no token");
    return issued;
  }

  /** Gives a token a new secret (shown once); the old one stops working. Retries rotate once. */
  async rotateToken(name: string): Promise<IssuedToken> {
    const req = { workspace: this.workspace, name, requestId: randomUUID() };
    const issued = (await this.retry(() => this.tokens.rotateToken(req))).issued;
    if (!issued) throw new Error("RotateToken returned no token");
    return issued;
  }

  /** Revokes a token: it stops working everywhere within seconds. */
  async revokeToken(name: string): Promise<void> {
    const req = { workspace: this.workspace, name, requestId: randomUUID() };
    await this.retry(() => this.tokens.deleteToken(req));
  }

  /** The token this client sends: its name, workspace and scopes. */
  async currentToken(): Promise<Token | undefined> {
    return (await this.retry(() => this.tokens.getCurrentToken({}))).token;
  }

  /** The workspace's tokens by name, fetched a page at a time (secrets are never listed). */
  async *listTokens(): AsyncGenerator<Token> {
    let pageToken = "";
    do {
      const page = await this.retry(() => this.tokens.listTokens({ workspace: this.workspace, pageToken }));
      yield* page.tokens;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Pushes every datafile under dir as one all-or-nothing push. */
  async pushDir(dir: string, options: { dryRun?: boolean; force?: boolean; prune?: boolean; variables?: Record<string, string> } = {}): Promise<PushResponse> {
    const files = readDatafiles(dir);
    const requestId = randomUUID();
    return this.retry(() => this.catalog.push({ workspace: this.workspace, files, requestId, ...options }));
  }

  /** Starts a copy; retries reuse the request id, so it starts once. */
  async runCopy(req: MessageInitShape<typeof RunCopyRequestSchema>): Promise<Job> {
    const r = { ...req, workspace: req.workspace || this.workspace, requestId: req.requestId || randomUUID() };
    const job = (await this.retry(() => this.scheduler.runCopy(r))).job;
    if (!job) throw new Error("RunCopy returned no job");
    return job;
  }

  /** Starts a populate; retries reuse the request id. */
  async populate(req: MessageInitShape<typeof PopulateRequestSchema>): Promise<Job> {
    const r = { ...req, workspace: req.workspace || this.workspace, requestId: req.requestId || randomUUID() };
    const job = (await this.retry(() => this.scheduler.populate(r))).job;
    if (!job) throw new Error("Populate returned no job");
    return job;
  }

  /** Follows a job until it ends; onProgress sees each state. Rejects with JobFailedError. */
  async wait(job: Job, onProgress?: (job: Job) => void): Promise<Job> {
    let last = job;
    for (let attempt = 0; ; attempt++) {
      try {
        for await (const resp of this.scheduler.watchJob({ workspace: job.workspace, id: job.id })) {
          if (resp.job) {
            last = resp.job;
            onProgress?.(last);
          }
        }
      } catch (err) {
        const e = toSluiceError(err);
        if (!(e instanceof SluiceError) || !e.retryable || attempt >= this.retries) throw e;
        await sleep(200 * 2 ** attempt);
        continue;
      }
      if (last.status === JobStatus.DONE) return last;
      if (last.status === JobStatus.ERROR || last.status === JobStatus.CANCELLED) throw new JobFailedError(last);
    }
  }

  /** The jobs req selects, newest first, fetched a page at a time. */
  async *jobs(req: MessageInitShape<typeof ListJobsRequestSchema> = {}): AsyncGenerator<Job> {
    let pageToken = "";
    do {
      const r = { ...req, workspace: req.workspace || this.workspace, pageToken };
      const page = await this.retry(() => this.scheduler.listJobs(r));
      yield* page.jobs;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** The ops-log events req selects, newest first, fetched a page at a time. */
  async *events(req: MessageInitShape<typeof QueryEventsRequestSchema> = {}): AsyncGenerator<OpsEvent> {
    let pageToken = "";
    do {
      const r = create(QueryEventsRequestSchema, req);
      r.filter ??= create(EventFilterSchema);
      r.filter.workspace ||= this.workspace;
      r.pageToken = pageToken;
      const page = await this.retry(() => this.opsLog.queryEvents(r));
      yield* page.events;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /**
   * Adds rows (NDJSON, CSV or Parquet; larger data goes through appendFile) to a Data Source.
   * Rows that do not convert go to `<datasource>_quarantine`; a malformed request is refused
   * whole, naming its line. Retries reuse the request id: the rows are written once.
   */
  async append(datasource: string, data: Uint8Array | string, options: AppendOptions = {}): Promise<AppendResult> {
    const req = {
      workspace: this.workspace, datasource, data: typeof data === "string" ? new TextEncoder().encode(data) : data,
      format: options.format ?? Format.UNSPECIFIED, csvHeader: options.csvHeader ?? CSVHeader.CSV_HEADER_UNSPECIFIED,
      wait: !options.noWait, requestId: randomUUID(),
    };
    const result = (await this.retry(() => this.ingest.append(req))).result;
    if (!result) throw new Error("Append returned no result");
    return result;
  }

  /**
   * Streams a file's rows into a Data Source (replace: they replace its whole content,
   * atomically). The file is checked whole before any row is kept; retries send it again with
   * the same request id, and its rows are written once.
   */
  async appendFile(datasource: string, path: string, options: AppendOptions & { replace?: boolean } = {}): Promise<AppendResult> {
    const start = {
      workspace: this.workspace, datasource, format: options.format ?? Format.UNSPECIFIED,
      mode: options.replace ? Mode.REPLACE : Mode.APPEND, csvHeader: options.csvHeader ?? CSVHeader.CSV_HEADER_UNSPECIFIED,
      wait: !options.noWait, fileName: basename(path), requestId: randomUUID(),
    };
    async function* messages(): AsyncIterable<MessageInitShape<typeof AppendStreamRequestSchema>> {
      yield { message: { case: "start", value: start } };
      for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
        yield { message: { case: "chunk", value: chunk as Uint8Array } };
      }
    }
    const result = (await this.retry(() => this.ingest.appendStream(messages()))).result;
    if (!result) throw new Error("AppendStream returned no result");
    return result;
  }

  /** A read-only query in the workspace (values encoded as QueryResponse documents). */
  async query(sql: string): Promise<QueryResponse> {
    return this.retry(() => this.catalog.query({ workspace: this.workspace, sql }));
  }
}
