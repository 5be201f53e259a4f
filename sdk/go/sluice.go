// Package sluice is the Go client of Sluice's v1 API: a connection with an address and a
// token, the generated service clients, and the few things every program writes around them:
// pushing a folder of datafiles, starting a copy or a populate and waiting on its progress,
// iterating over pages, retrying with the request's idempotency key, and errors with their
// structured details.
//
//	c, err := sluice.Dial("127.0.0.1:7181", sluice.WithToken(token))
//	job, err := c.RunCopy(ctx, &schedulerv1.RunCopyRequest{Pipe: "daily_sales"})
//	job, err = c.Wait(ctx, job, func(j *schedulerv1.Job) { fmt.Println(j.GetProgress()) })
package sluice

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// Client is a connection to Sluice (all-in-one, or the address that serves the services).
type Client struct {
	conn *grpc.ClientConn
	// Catalog, Tokens, Scheduler and OpsLog are the generated clients, for calls this package
	// does not wrap. Their errors are plain gRPC statuses; AsError reads them.
	Catalog   catalogv1.CatalogServiceClient
	Tokens    catalogv1.TokenServiceClient
	Scheduler schedulerv1.SchedulerServiceClient
	OpsLog    opslogv1.OpsLogServiceClient
	Ingest    ingestv1.IngestServiceClient
	// Workspace is filled into requests that name none; empty means the token's workspace.
	Workspace string
	retries   int
}

type options struct {
	token     string
	tls       *tls.Config
	workspace string
	retries   int
	dial      []grpc.DialOption
}

// Option configures Dial.
type Option func(*options)

// WithToken sends the token with every call (`authorization: Bearer <token>`).
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithTLS connects with TLS.
func WithTLS(cfg *tls.Config) Option { return func(o *options) { o.tls = cfg } }

// WithWorkspace sets the workspace of requests that name none (default: the token's; the
// operator token, which belongs to no workspace, must name one).
func WithWorkspace(ws string) Option { return func(o *options) { o.workspace = ws } }

// WithRetries sets how often a call that failed with a retryable error (UNAVAILABLE,
// REQUEST_IN_PROGRESS) is tried again (default 4; 0 disables retries).
func WithRetries(n int) Option { return func(o *options) { o.retries = n } }

// WithDialOptions adds gRPC dial options.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, opts...) }
}

// Dial connects to addr (host:port). No call is made yet.
func Dial(addr string, opts ...Option) (*Client, error) {
	o := options{retries: 4}
	for _, opt := range opts {
		opt(&o)
	}
	creds := insecure.NewCredentials()
	if o.tls != nil {
		creds = credentials.NewTLS(o.tls)
	}
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, o.dial...)
	if o.token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{token: o.token, secure: o.tls != nil}))
	}
	cc, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("sluice: dial %s: %w", addr, err)
	}
	return &Client{
		conn: cc, Catalog: catalogv1.NewCatalogServiceClient(cc), Tokens: catalogv1.NewTokenServiceClient(cc),
		Scheduler: schedulerv1.NewSchedulerServiceClient(cc), Ingest: ingestv1.NewIngestServiceClient(cc),
		OpsLog: opslogv1.NewOpsLogServiceClient(cc), Workspace: o.workspace, retries: o.retries,
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false so that a token can be sent over plaintext loopback; use
// WithTLS across networks.
func (b bearer) RequireTransportSecurity() bool { return false }

// NewRequestID is a new idempotency key (a random UUID, as AIP-155 asks).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// retry runs call until it succeeds, fails with an error a retry cannot help, or the retries
// are spent; the request (and so its request_id) is the same each time. Errors are *Error.
func (c *Client) retry(ctx context.Context, call func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		e := AsError(err)
		if e == nil || !e.Retryable() || attempt >= c.retries {
			if e != nil {
				return e
			}
			return err
		}
		delay := e.RetryDelay
		if delay <= 0 {
			delay = time.Duration(200<<attempt) * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return e
		case <-time.After(delay):
		}
	}
}

// CreateWorkspace creates a workspace with the operator token, or returns it when it exists.
// The response holds the new workspace's admin token (shown once; empty when it existed);
// retries answer the same token.
func (c *Client) CreateWorkspace(ctx context.Context, name string) (*catalogv1.CreateWorkspaceResponse, error) {
	req := &catalogv1.CreateWorkspaceRequest{Name: name, RequestId: NewRequestID()}
	var resp *catalogv1.CreateWorkspaceResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Catalog.CreateWorkspace(ctx, req)
		return err
	})
	return resp, err
}

// CreateToken creates a token of the workspace with scopes (for example "JOBS:READ",
// "PIPES:RUN:daily_copy") and returns it with its secret, shown once. Retries answer the same
// secret: the token is made once.
func (c *Client) CreateToken(ctx context.Context, name string, scopes []string, description string) (*catalogv1.IssuedToken, error) {
	req := &catalogv1.CreateTokenRequest{Workspace: c.Workspace, Name: name, Scopes: scopes, Description: description, RequestId: NewRequestID()}
	var resp *catalogv1.CreateTokenResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Tokens.CreateToken(ctx, req)
		return err
	})
	return resp.GetIssued(), err
}

// RotateToken gives a token a new secret (returned once); the old one stops working. Retries
// answer the same secret: the token is rotated once.
func (c *Client) RotateToken(ctx context.Context, name string) (*catalogv1.IssuedToken, error) {
	req := &catalogv1.RotateTokenRequest{Workspace: c.Workspace, Name: name, RequestId: NewRequestID()}
	var resp *catalogv1.RotateTokenResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Tokens.RotateToken(ctx, req)
		return err
	})
	return resp.GetIssued(), err
}

// RevokeToken deletes a token: it stops working everywhere within seconds.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	req := &catalogv1.DeleteTokenRequest{Workspace: c.Workspace, Name: name, RequestId: NewRequestID()}
	return c.retry(ctx, func(ctx context.Context) error {
		_, err := c.Tokens.DeleteToken(ctx, req)
		return err
	})
}

// CurrentToken describes the token this client sends: its name, workspace and scopes.
func (c *Client) CurrentToken(ctx context.Context) (*catalogv1.Token, error) {
	var resp *catalogv1.GetCurrentTokenResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Tokens.GetCurrentToken(ctx, &catalogv1.GetCurrentTokenRequest{})
		return err
	})
	return resp.GetToken(), err
}

// ListTokens iterates over the workspace's tokens by name, page by page (secrets are never listed).
func (c *Client) ListTokens(ctx context.Context) func(yield func(*catalogv1.Token, error) bool) {
	return func(yield func(*catalogv1.Token, error) bool) {
		req := &catalogv1.ListTokensRequest{Workspace: c.Workspace}
		for {
			var resp *catalogv1.ListTokensResponse
			err := c.retry(ctx, func(ctx context.Context) (err error) {
				resp, err = c.Tokens.ListTokens(ctx, req)
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, t := range resp.GetTokens() {
				if !yield(t, nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}

// PushOptions are the flags of a push.
type PushOptions struct {
	DryRun, Force, Prune bool
	// Variables fill `$VAR` / `${VAR}` in the files.
	Variables map[string]string
}

// PushDir pushes every .datasource, .pipe and .incl file under dir (paths relative to it), as
// one all-or-nothing push. A refused push is an *Error with one Diagnostic per problem.
func (c *Client) PushDir(ctx context.Context, dir string, o PushOptions) (*catalogv1.PushResponse, error) {
	files, err := ReadDatafiles(dir)
	if err != nil {
		return nil, err
	}
	req := &catalogv1.PushRequest{
		Workspace: c.Workspace, Files: files, DryRun: o.DryRun, Force: o.Force, Prune: o.Prune,
		Variables: o.Variables, RequestId: NewRequestID(),
	}
	var resp *catalogv1.PushResponse
	err = c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Catalog.Push(ctx, req)
		return err
	})
	return resp, err
}

// ReadDatafiles reads the datafiles under dir, in path order.
func ReadDatafiles(dir string) ([]*catalogv1.Datafile, error) {
	var out []*catalogv1.Datafile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(p) {
		case ".datasource", ".pipe", ".incl":
		default:
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, &catalogv1.Datafile{Path: filepath.ToSlash(rel), Content: string(b)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sluice: read datafiles under %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("sluice: no .datasource, .pipe or .incl file under %s", dir)
	}
	slices.SortFunc(out, func(a, b *catalogv1.Datafile) int { return strings.Compare(a.GetPath(), b.GetPath()) })
	return out, nil
}

// RunCopy starts a copy. The workspace and a request_id are filled in when unset; retries
// reuse the request_id, so the copy starts once however often the call is tried.
func (c *Client) RunCopy(ctx context.Context, req *schedulerv1.RunCopyRequest) (*schedulerv1.Job, error) {
	if req.GetWorkspace() == "" {
		req.Workspace = c.Workspace
	}
	if req.GetRequestId() == "" {
		req.RequestId = NewRequestID()
	}
	var resp *schedulerv1.RunCopyResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Scheduler.RunCopy(ctx, req)
		return err
	})
	return resp.GetJob(), err
}

// Populate starts a populate, like RunCopy.
func (c *Client) Populate(ctx context.Context, req *schedulerv1.PopulateRequest) (*schedulerv1.Job, error) {
	if req.GetWorkspace() == "" {
		req.Workspace = c.Workspace
	}
	if req.GetRequestId() == "" {
		req.RequestId = NewRequestID()
	}
	var resp *schedulerv1.PopulateResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Scheduler.Populate(ctx, req)
		return err
	})
	return resp.GetJob(), err
}

// JobError is the error of a job that ended ERROR or CANCELLED.
type JobError struct {
	Job *schedulerv1.Job
}

func (e *JobError) Error() string {
	return fmt.Sprintf("job %s ended %s: %s (reason %s)", e.Job.GetId(), strings.TrimPrefix(e.Job.GetStatus().String(), "JOB_STATUS_"),
		e.Job.GetError().GetMessage(), e.Job.GetError().GetReason())
}

// Wait follows a job until it ends, calling progress (when not nil) with each state, and
// returns the final job; a job that ends ERROR or CANCELLED is also a *JobError. A dropped
// stream is followed again.
func (c *Client) Wait(ctx context.Context, job *schedulerv1.Job, progress func(*schedulerv1.Job)) (*schedulerv1.Job, error) {
	last := job
	for attempt := 0; ; attempt++ {
		stream, err := c.Scheduler.WatchJob(ctx, &schedulerv1.WatchJobRequest{Workspace: job.GetWorkspace(), Id: job.GetId()})
		if err == nil {
			for {
				resp, rerr := stream.Recv()
				if rerr != nil {
					err = rerr
					break
				}
				last = resp.GetJob()
				if progress != nil {
					progress(last)
				}
			}
		}
		switch last.GetStatus() {
		case schedulerv1.JobStatus_JOB_STATUS_DONE:
			return last, nil
		case schedulerv1.JobStatus_JOB_STATUS_ERROR, schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
			return last, &JobError{Job: last}
		}
		e := AsError(err)
		if ctx.Err() != nil || e == nil || (!e.Retryable() && e.Code != codes.Unknown) || attempt >= c.retries {
			if e != nil {
				return last, e
			}
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(time.Duration(200<<attempt) * time.Millisecond):
		}
	}
}

// Jobs iterates over the jobs req selects, newest first, page by page (req.PageSize per
// page; the workspace is filled in when unset).
func (c *Client) Jobs(ctx context.Context, req *schedulerv1.ListJobsRequest) func(yield func(*schedulerv1.Job, error) bool) {
	return func(yield func(*schedulerv1.Job, error) bool) {
		if req.GetWorkspace() == "" {
			req.Workspace = c.Workspace
		}
		req.PageToken = ""
		for {
			var resp *schedulerv1.ListJobsResponse
			err := c.retry(ctx, func(ctx context.Context) (err error) {
				resp, err = c.Scheduler.ListJobs(ctx, req)
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, j := range resp.GetJobs() {
				if !yield(j, nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}

// Events iterates over the ops-log events req selects, newest first, page by page.
func (c *Client) Events(ctx context.Context, req *opslogv1.QueryEventsRequest) func(yield func(*opslogv1.OpsEvent, error) bool) {
	return func(yield func(*opslogv1.OpsEvent, error) bool) {
		if req.GetFilter() == nil {
			req.Filter = &opslogv1.EventFilter{}
		}
		if req.GetFilter().GetWorkspace() == "" {
			req.Filter.Workspace = c.Workspace
		}
		req.PageToken = ""
		for {
			var resp *opslogv1.QueryEventsResponse
			err := c.retry(ctx, func(ctx context.Context) (err error) {
				resp, err = c.OpsLog.QueryEvents(ctx, req)
				return err
			})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, ev := range resp.GetEvents() {
				if !yield(ev, nil) {
					return
				}
			}
			if resp.GetNextPageToken() == "" {
				return
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
}

// AppendOptions say how appended rows are read and when the call returns.
type AppendOptions struct {
	// Format of the data (default: from the file name, else NDJSON).
	Format ingestv1.Format
	// CSVHeader says whether a CSV starts with a header line (default: auto).
	CSVHeader ingestv1.CSVHeader
	// NoWait returns once the rows are stored, before they are visible in the Data Source.
	NoWait bool
}

// Append adds rows (NDJSON, CSV or Parquet, at most the server's request size; larger data goes
// through AppendFile) to a Data Source. Rows that do not convert go to
// `<datasource>_quarantine`; a malformed request is refused whole, naming its line. Retries
// reuse the request id: the rows are written once.
func (c *Client) Append(ctx context.Context, datasource string, data []byte, o AppendOptions) (*ingestv1.AppendResult, error) {
	req := &ingestv1.AppendRequest{Workspace: c.Workspace, Datasource: datasource, Format: o.Format, CsvHeader: o.CSVHeader,
		Data: data, Wait: !o.NoWait, RequestId: NewRequestID()}
	var resp *ingestv1.AppendResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Ingest.Append(ctx, req)
		return err
	})
	return resp.GetResult(), err
}

// AppendFile streams a file's rows into a Data Source (replace: the file's rows replace its
// whole content, atomically). The file is checked whole before any row is kept. Retries send
// the file again with the same request id: its rows are written once.
func (c *Client) AppendFile(ctx context.Context, datasource, path string, replace bool, o AppendOptions) (*ingestv1.AppendResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sluice: %w", err)
	}
	defer func() { _ = f.Close() }()
	mode := ingestv1.Mode_MODE_APPEND
	if replace {
		mode = ingestv1.Mode_MODE_REPLACE
	}
	start := &ingestv1.AppendStart{Workspace: c.Workspace, Datasource: datasource, Format: o.Format, Mode: mode, CsvHeader: o.CSVHeader,
		Wait: !o.NoWait, FileName: filepath.Base(path), RequestId: NewRequestID()}
	var resp *ingestv1.AppendStreamResponse
	err = c.retry(ctx, func(ctx context.Context) error {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		resp, err = sendFile(ctx, c.Ingest, start, f)
		return err
	})
	return resp.GetResult(), err
}

// sendFile sends start, then the file in chunks of 1 MiB, and returns the answer.
func sendFile(ctx context.Context, client ingestv1.IngestServiceClient, start *ingestv1.AppendStart, f io.Reader) (*ingestv1.AppendStreamResponse, error) {
	stream, err := client.AppendStream(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Start{Start: start}}); err != nil {
		return stream.CloseAndRecv() // the server's answer says why
	}
	buf := make([]byte, 1<<20)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&ingestv1.AppendStreamRequest{Message: &ingestv1.AppendStreamRequest_Chunk{Chunk: buf[:n]}}); err != nil {
				// The server answered early: a refusal, or a retry's stored answer.
				return stream.CloseAndRecv()
			}
		}
		if errors.Is(rerr, io.EOF) {
			return stream.CloseAndRecv()
		}
		if rerr != nil {
			return nil, fmt.Errorf("sluice: read %s: %w", start.GetFileName(), rerr)
		}
	}
}

// Query runs a read-only statement in the workspace.
func (c *Client) Query(ctx context.Context, sql string) (*catalogv1.QueryResponse, error) {
	var resp *catalogv1.QueryResponse
	err := c.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = c.Catalog.Query(ctx, &catalogv1.QueryRequest{Workspace: c.Workspace, Sql: sql})
		return err
	})
	return resp, err
}
