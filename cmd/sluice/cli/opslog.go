package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
)

// eventTypeName is the event type as datasources_ops_log spells it ("populateview-queued").
func eventTypeName(t opslogv1.EventType) string {
	n := strings.ToLower(strings.TrimPrefix(t.String(), "EVENT_TYPE_"))
	if n != "delete_data" {
		n = strings.ReplaceAll(n, "_", "-")
	}
	return n
}

// resultName is the result as datasources_ops_log spells it ("ok").
func resultName(r opslogv1.Result) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "RESULT_"))
}

// parseEventTypes reads --event-type values as the table spells them.
func parseEventTypes(names []string) ([]opslogv1.EventType, error) {
	var out []opslogv1.EventType
	var valid []string
	for _, n := range names {
		found := false
		valid = valid[:0]
		for v := range opslogv1.EventType_name {
			t := opslogv1.EventType(v)
			if t == opslogv1.EventType_EVENT_TYPE_UNSPECIFIED {
				continue
			}
			valid = append(valid, eventTypeName(t))
			if eventTypeName(t) == n {
				out, found = append(out, t), true
			}
		}
		if !found {
			sort.Strings(valid)
			return nil, usageError("--event-type: %q is not one of %s", n, strings.Join(valid, ", "))
		}
	}
	return out, nil
}

// parseResults reads --result values.
func parseResults(names []string) ([]opslogv1.Result, error) {
	return parseEnum[opslogv1.Result]("--result", "RESULT_", opslogv1.Result_value, "ok, error, cancelled", names)
}

// opsLogEvent is an event as `--output json` prints it: the datasources_ops_log columns.
type opsLogEvent struct {
	Timestamp              time.Time         `json:"timestamp"`
	EventType              string            `json:"event_type"`
	DatasourceID           string            `json:"datasource_id"`
	DatasourceName         string            `json:"datasource_name"`
	Result                 string            `json:"result"`
	ElapsedTime            float64           `json:"elapsed_time"`
	Error                  string            `json:"error,omitempty"`
	RequestID              string            `json:"request_id,omitempty"`
	ImportID               string            `json:"import_id,omitempty"`
	JobID                  string            `json:"job_id,omitempty"`
	Rows                   uint64            `json:"rows"`
	RowsQuarantine         uint64            `json:"rows_quarantine"`
	BlocksIDs              []string          `json:"blocks_ids,omitempty"`
	OperationID            string            `json:"operation_id,omitempty"`
	ReadRows               uint64            `json:"read_rows"`
	CPUTime                *float64          `json:"cpu_time"`     // null where the engine does not report it
	MemoryUsage            *uint64           `json:"memory_usage"` // null where the engine does not report it
	ReadBytes              uint64            `json:"read_bytes"`
	WrittenRows            uint64            `json:"written_rows"`
	WrittenBytes           uint64            `json:"written_bytes"`
	WrittenRowsQuarantine  uint64            `json:"written_rows_quarantine"`
	WrittenBytesQuarantine uint64            `json:"written_bytes_quarantine"`
	PipeID                 string            `json:"pipe_id,omitempty"`
	PipeName               string            `json:"pipe_name,omitempty"`
	Release                string            `json:"release,omitempty"`
	Options                map[string]string `json:"options,omitempty"`
	ResourceTags           []string          `json:"resource_tags,omitempty"`
	ID                     string            `json:"id"`
}

// cpuSeconds is an event's CPU time in seconds, nil where the engine does not report it.
func cpuSeconds(ev *opslogv1.OpsEvent) *float64 {
	if ev.GetCpuTime() == nil {
		return nil
	}
	s := ev.GetCpuTime().AsDuration().Seconds()
	return &s
}

func toOpsLogEvent(ev *opslogv1.OpsEvent) opsLogEvent {
	return opsLogEvent{
		ID: ev.GetId(), Timestamp: ev.GetTimestamp().AsTime(), EventType: eventTypeName(ev.GetEventType()),
		DatasourceID: ev.GetDatasourceId(), DatasourceName: ev.GetDatasourceName(), Result: resultName(ev.GetResult()),
		ElapsedTime: ev.GetElapsedTime().AsDuration().Seconds(), Error: ev.GetError(), RequestID: ev.GetRequestId(),
		ImportID: ev.GetImportId(), JobID: ev.GetJobId(), Rows: ev.GetRows(), RowsQuarantine: ev.GetRowsQuarantine(),
		BlocksIDs: ev.GetBlocksIds(), OperationID: ev.GetOperationId(), ReadRows: ev.GetReadRows(),
		CPUTime: cpuSeconds(ev), MemoryUsage: ev.MemoryUsage, ReadBytes: ev.GetReadBytes(),
		WrittenRows: ev.GetWrittenRows(), WrittenBytes: ev.GetWrittenBytes(),
		WrittenRowsQuarantine: ev.GetWrittenRowsQuarantine(), WrittenBytesQuarantine: ev.GetWrittenBytesQuarantine(),
		PipeID: ev.GetPipeId(), PipeName: ev.GetPipeName(), Release: ev.GetRelease(), Options: ev.GetOptions(),
		ResourceTags: ev.GetResourceTags(),
	}
}

const opsLogLineFormat = "%-20s  %-19s  %-24s  %-9s  %10s  %12s  %12s  %8s  %-20s  %s\n"

func opsLogHeader(w io.Writer) {
	fmt.Fprintf(w, opsLogLineFormat, "TIMESTAMP", "EVENT", "DATASOURCE", "RESULT", "ROWS", "READ_BYTES", "WRITTEN_BYTES", "ELAPSED", "JOB", "ERROR")
}

func opsLogLine(w io.Writer, ev *opslogv1.OpsEvent) {
	fmt.Fprintf(w, opsLogLineFormat, ev.GetTimestamp().AsTime().UTC().Format("2006-01-02 15:04:05Z"), eventTypeName(ev.GetEventType()),
		ev.GetDatasourceName(), resultName(ev.GetResult()), fmt.Sprint(ev.GetRows()), fmt.Sprint(ev.GetReadBytes()),
		fmt.Sprint(ev.GetWrittenBytes()), fmt.Sprintf("%.2fs", ev.GetElapsedTime().AsDuration().Seconds()), ev.GetJobId(),
		strings.ReplaceAll(ev.GetError(), "\n", " "))
}

func opsLogCommand() *command {
	var (
		datasource, job, pipe string
		eventTypes, results   listFlag
		since                 sinceFlag
		limit                 int
		follow                bool
		pageToken             string
	)
	return &command{
		name:  "ops-log",
		short: "show datasources_ops_log events (newest first), or follow new ones",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&datasource, "datasource", "", "only this Data Source")
			fs.Var(&eventTypes, "event-type", "only this event type (repeatable): create, alter, delete, truncate, rename, append, replace, delete_data, copy, populateview-queued, populateview")
			fs.Var(&results, "result", "only this result (repeatable): ok, error, cancelled")
			fs.StringVar(&job, "job", "", "only this job id")
			fs.StringVar(&pipe, "pipe", "", "only this pipe (name or id)")
			fs.Var(&since, "since", "only events of the last DURATION (e.g. 1h), or since a time (RFC 3339); with --follow, the backlog to show first")
			fs.IntVar(&limit, "limit", 100, "most events to show (not with --follow); when more remain, says how to read them")
			fs.StringVar(&pageToken, "page-token", "", "go on from where a listing cut by --limit ended (with the same filters)")
			fs.BoolVar(&follow, "follow", false, "keep printing new events as they are written")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("ops-log: unexpected argument %q", args[0])
			}

			if limit < 1 {
				return usageError("--limit: %d must be at least 1", limit)
			}
			types, err := parseEventTypes(eventTypes)
			if err != nil {
				return err
			}
			res, err := parseResults(results)
			if err != nil {
				return err
			}
			filter := &opslogv1.EventFilter{
				Workspace: env.Globals.Workspace, Datasource: datasource, EventTypes: types,
				Results: res, JobId: job, Pipe: pipe,
			}
			client, err := opsLogClient(ctx, env)
			if err != nil {
				return err
			}
			if follow {
				return followOpsLog(ctx, env, client, filter, since.backlog(time.Now()))
			}
			if from, ok := since.from(time.Now()); ok {
				filter.Since = timestamppb.New(from)
			}
			// Pages of at most 1000 until --limit events are read; the token goes on after them.
			resp := &opslogv1.QueryEventsResponse{}
			resp.NextPageToken, err = env.pages(ctx, pageToken, func(ctx context.Context, token string) (string, error) {
				page, err := client.QueryEvents(ctx, &opslogv1.QueryEventsRequest{Filter: filter, PageSize: int32(min(limit-len(resp.GetEvents()), 1000)), PageToken: token})
				resp.Events = append(resp.Events, page.GetEvents()...)
				if err == nil && len(resp.GetEvents()) >= limit {
					return page.GetNextPageToken(), errNoMore
				}
				return page.GetNextPageToken(), err
			})
			if err != nil {
				return fmt.Errorf("ops-log: %s", status.Convert(err).Message())
			}
			if env.Globals.Output == "json" {
				out := make([]opsLogEvent, 0, len(resp.GetEvents()))
				for _, ev := range resp.GetEvents() {
					out = append(out, toOpsLogEvent(ev))
				}
				v := map[string]any{"events": out}
				if resp.GetNextPageToken() != "" {
					v["next_page_token"] = resp.GetNextPageToken()
				}
				return env.printJSON(v)
			}
			more := resp.GetNextPageToken()
			if more != "" && filter.GetSince() != nil {
				// The token continues this listing only: the next one must ask from the same time.
				more += " --since " + filter.GetSince().AsTime().Format(time.RFC3339Nano)
			}
			defer env.moreHint("events", more)
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIMESTAMP\tEVENT\tDATASOURCE\tRESULT\tROWS\tREAD_BYTES\tWRITTEN_BYTES\tELAPSED\tJOB\tERROR")
			for _, ev := range resp.GetEvents() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.2fs\t%s\t%s\n", ev.GetTimestamp().AsTime().UTC().Format("2006-01-02 15:04:05Z"),
					eventTypeName(ev.GetEventType()), ev.GetDatasourceName(), resultName(ev.GetResult()), ev.GetRows(), ev.GetReadBytes(),
					ev.GetWrittenBytes(), ev.GetElapsedTime().AsDuration().Seconds(), ev.GetJobId(), strings.ReplaceAll(ev.GetError(), "\n", " "))
			}
			return tw.Flush()
		},
	}
}

// followOpsLog prints the backlog and then each new event until ctx ends (Ctrl-C); with
// --output json, one JSON object per line.
func followOpsLog(ctx context.Context, env *Env, client opslogv1.OpsLogServiceClient, filter *opslogv1.EventFilter, backlog time.Duration) error {
	stream, err := client.TailEvents(ctx, &opslogv1.TailEventsRequest{Filter: filter, Backlog: durationpb.New(backlog)})
	if err != nil {
		return fmt.Errorf("ops-log: %s", status.Convert(err).Message())
	}
	if env.Globals.Output != "json" {
		opsLogHeader(env.Stdout)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) || (err != nil && ctx.Err() != nil) {
			return nil //nolint:nilerr // the stream ended, or the user stopped following
		}
		if err != nil {
			return fmt.Errorf("ops-log: %s", status.Convert(err).Message())
		}
		if env.Globals.Output == "json" {
			if err := printJSONLine(env.Stdout, toOpsLogEvent(resp.GetEvent())); err != nil {
				return err
			}
			continue
		}
		opsLogLine(env.Stdout, resp.GetEvent())
	}
}

func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// sinceFlag is --since: a duration back from now, or a time.
type sinceFlag struct {
	d time.Duration
	t time.Time
}

func (f *sinceFlag) String() string {
	if !f.t.IsZero() {
		return f.t.Format(time.RFC3339Nano)
	}
	if f.d == 0 {
		return ""
	}
	return f.d.String()
}

func (f *sinceFlag) Set(v string) error {
	if d, err := time.ParseDuration(v); err == nil {
		if d < 0 {
			return fmt.Errorf("%s is negative", v)
		}
		f.d, f.t = d, time.Time{}
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return fmt.Errorf("%q is neither a duration (1h30m) nor a time (2024-06-01T13:00:00Z)", v)
	}
	f.d, f.t = 0, t
	return nil
}

// from is the time events are shown from; false when --since was not given.
func (f *sinceFlag) from(now time.Time) (time.Time, bool) {
	switch {
	case !f.t.IsZero():
		return f.t, true
	case f.d > 0:
		return now.Add(-f.d), true
	}
	return time.Time{}, false
}

// backlog is how far back --follow starts.
func (f *sinceFlag) backlog(now time.Time) time.Duration {
	if from, ok := f.from(now); ok && from.Before(now) {
		return now.Sub(from)
	}
	return 0
}
