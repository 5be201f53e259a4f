package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// jobCommand is `sluice job ls|show|cancel|noop`.
func jobCommand() *command {
	return &command{name: "job", short: "list, show and cancel jobs", subs: []*command{
		jobLsCommand(), jobShowCommand(), jobCancelCommand(), jobNoopCommand(),
	}}
}

// statusWord is a status as the CLI shows and accepts it: waiting, working, done, error,
// cancelling, cancelled.
func statusWord(s schedulerv1.JobStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STATUS_"))
}

// kindWord is a kind as the CLI shows and accepts it: copy, populateview, noop.
func kindWord(k schedulerv1.JobKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "JOB_KIND_"))
}

// listFlag collects a repeatable (or comma-separated) flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// parseEnum reads a flag's words as values of a proto enum named prefix + the word in capitals
// (values: the enum's _value map); the unspecified value is refused, naming those accepted.
func parseEnum[E ~int32](flagName, prefix string, values map[string]int32, accepted string, words []string) ([]E, error) {
	var out []E
	for _, w := range words {
		v, ok := values[prefix+strings.ToUpper(w)]
		if !ok || v == 0 {
			return nil, usageError("%s: %q is not one of %s", flagName, w, accepted)
		}
		out = append(out, E(v))
	}
	return out, nil
}

func parseStatuses(words []string) ([]schedulerv1.JobStatus, error) {
	return parseEnum[schedulerv1.JobStatus]("--status", "JOB_STATUS_", schedulerv1.JobStatus_value, "waiting, working, done, error, cancelling, cancelled", words)
}

func parseKinds(words []string) ([]schedulerv1.JobKind, error) {
	words = slices.Clone(words)
	for i, w := range words {
		if w == "populate" {
			words[i] = "populateview"
		}
	}
	return parseEnum[schedulerv1.JobKind]("--kind", "JOB_KIND_", schedulerv1.JobKind_value, "copy, populateview, noop", words)
}

func jobLsCommand() *command {
	var statuses, kinds listFlag
	var pipe string
	var limit int
	var pageToken string
	return &command{
		name:  "ls",
		short: "list the workspace's jobs, newest first (finished ones are kept 48 hours)",
		flags: func(fs *flag.FlagSet) {
			fs.Var(&statuses, "status", "only jobs in this status (repeatable): waiting, working, done, error, cancelling, cancelled")
			fs.Var(&kinds, "kind", "only jobs of this kind (repeatable): copy, populateview, noop")
			fs.StringVar(&pipe, "pipe", "", "only jobs of this pipe")
			fs.IntVar(&limit, "limit", 100, "at most this many jobs (0: all); when more remain, says how to read them")
			fs.StringVar(&pageToken, "page-token", "", "go on from where a listing cut by --limit ended (the same filters)")
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("job ls: unexpected argument %q", args[0])
			}
			st, err := parseStatuses(statuses)
			if err != nil {
				return err
			}
			kd, err := parseKinds(kinds)
			if err != nil {
				return err
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			if limit < 0 {
				return usageError("--limit: %d is negative", limit)
			}
			// Pages of at most 1000 until --limit jobs are read; the token goes on after them.
			resp := &schedulerv1.ListJobsResponse{}
			resp.NextPageToken, err = env.pages(ctx, pageToken, func(ctx context.Context, token string) (string, error) {
				size := 1000
				if limit > 0 {
					size = min(limit-len(resp.GetJobs()), size)
				}
				page, err := client.ListJobs(ctx, &schedulerv1.ListJobsRequest{
					Workspace: env.Globals.Workspace, Statuses: st, Kinds: kd, Pipe: pipe, PageSize: int32(size), PageToken: token,
				})
				resp.Jobs = append(resp.Jobs, page.GetJobs()...)
				if err == nil && limit > 0 && len(resp.GetJobs()) >= limit {
					return page.GetNextPageToken(), errNoMore
				}
				return page.GetNextPageToken(), err
			})
			if err != nil {
				return callError(err)
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp)
			}
			defer env.moreHint("jobs", resp.GetNextPageToken())
			tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tSTATUS\tPIPE\tCREATED\tPROGRESS\tINFO")
			for _, j := range resp.GetJobs() {
				info := j.GetWaitingReason()
				if j.GetError() != nil {
					info = j.GetError().GetMessage()
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\n", j.GetId(), kindWord(j.GetKind()), statusWord(j.GetStatus()),
					dash(j.GetPipe()), j.GetCreateTime().AsTime().UTC().Format(time.DateTime),
					progressDone(j.GetProgress()), progressTotal(j.GetProgress()), info)
			}
			return tw.Flush()
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func jobShowCommand() *command {
	return &command{
		name:  "show",
		short: "show one job: status, times, progress, error",
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("job show: give one job id")
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			resp, err := call(ctx, env, client.GetJob, &schedulerv1.GetJobRequest{Workspace: env.Globals.Workspace, Id: args[0]})
			if err != nil {
				return callError(err)
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp.GetJob())
			}
			printJob(env.Stdout, resp.GetJob())
			return nil
		},
	}
}

// printJob prints a job as "field: value" lines, leaving out what is not set.
func printJob(w io.Writer, j *schedulerv1.Job) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	ts := func(t interface{ AsTime() time.Time }, set bool) string {
		if !set {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339Nano)
	}
	row("id", j.GetId())
	row("workspace", j.GetWorkspace())
	row("kind", kindWord(j.GetKind()))
	row("status", statusWord(j.GetStatus()))
	row("waiting reason", j.GetWaitingReason())
	row("pipe", j.GetPipe())
	row("node", j.GetNode())
	row("target", j.GetTargetDatasource())
	row("execution", strings.ToLower(strings.TrimPrefix(j.GetExecutionType().String(), "EXECUTION_TYPE_")))
	row("job timestamp", ts(j.GetJobTimestamp(), j.GetJobTimestamp() != nil))
	row("created", ts(j.GetCreateTime(), j.GetCreateTime() != nil))
	row("started", ts(j.GetStartTime(), j.GetStartTime() != nil))
	row("finished", ts(j.GetFinishTime(), j.GetFinishTime() != nil))
	row("max execution time", j.GetMaxExecutionTime().AsDuration().String())
	p := j.GetProgress()
	if p.GetPartitionsTotal() > 0 {
		row("progress", fmt.Sprintf("%d/%d partitions, %d/%d steps", p.GetPartitionsDone(), p.GetPartitionsTotal(), p.GetStepsDone(), p.GetStepsTotal()))
	} else {
		row("progress", fmt.Sprintf("%d/%d steps", p.GetStepsDone(), p.GetStepsTotal()))
	}
	if st := p.GetStatistics(); st != nil {
		row("read", fmt.Sprintf("%d rows, %d bytes", st.GetReadRows(), st.GetReadBytes()))
		row("written", fmt.Sprintf("%d rows, %d bytes", st.GetWrittenRows(), st.GetWrittenBytes()))
	}
	if e := j.GetError(); e != nil {
		msg := e.GetMessage()
		if e.GetClickhouseCode() != 0 {
			msg = fmt.Sprintf("%s (ClickHouse code %d)", msg, e.GetClickhouseCode())
		}
		row("error", msg)
	}
	keys := make([]string, 0, len(j.GetParameters()))
	for k := range j.GetParameters() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		row("parameter "+k, j.GetParameters()[k])
	}
	_ = tw.Flush()
}

func jobCancelCommand() *command {
	var requestID string
	return &command{
		name:  "cancel",
		short: "cancel a waiting or working job",
		flags: func(fs *flag.FlagSet) { requestIDFlag(fs, &requestID) },
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("job cancel: give one job id")
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			resp, err := change(ctx, env, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (*schedulerv1.CancelJobResponse, error) {
				return client.CancelJob(ctx, &schedulerv1.CancelJobRequest{Workspace: env.Globals.Workspace, Id: args[0], RequestId: id})
			})
			if err != nil {
				return err
			}
			if env.Globals.Output == "json" {
				return env.printProto(resp.GetJob())
			}
			fmt.Fprintf(env.Stdout, "job %s: %s\n", resp.GetJob().GetId(), statusWord(resp.GetJob().GetStatus()))
			return nil
		},
	}
}

// jobNoopCommand is a diagnostic: it runs a NOOP job, which touches no data, to check that the
// scheduler, the queue and the executors work (and to load them).
func jobNoopCommand() *command {
	var steps int
	var sleep, maxExec time.Duration
	var fail string
	var limited, wait bool
	var requestID string
	return &command{
		name:  "noop",
		short: "diagnostic: run an empty job through scheduler, queue and executors",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&steps, "steps", 1, "steps in the job")
			fs.DurationVar(&sleep, "sleep", 0, "each step sleeps this long")
			fs.StringVar(&fail, "fail", "", "make each step fail: permanent or transient")
			fs.BoolVar(&limited, "limited", false, "count against the workspace's copy concurrency limit")
			fs.DurationVar(&maxExec, "max-execution-time", 0, "maximum execution time (default: the server's)")
			fs.BoolVar(&wait, "wait", false, "wait for the job to end, showing its progress")
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("job noop: unexpected argument %q", args[0])
			}
			params := map[string]string{"steps": fmt.Sprint(steps)}
			if sleep > 0 {
				params["sleep"] = sleep.String()
			}
			if fail != "" {
				params["fail"] = fail
			}
			if limited {
				params["limited"] = "true"
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			req := &schedulerv1.RunNoopJobRequest{Workspace: env.Globals.Workspace, Parameters: params}
			if maxExec > 0 {
				req.MaxExecutionTime = durationpb.New(maxExec)
			}
			var resp *schedulerv1.RunNoopJobResponse
			err = env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (err error) {
				req.RequestId = id
				resp, err = client.RunNoopJob(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return startedJob(ctx, env, client, resp.GetJob(), wait)
		},
	}
}

// startedJob finishes every command that starts a job (copies, populates, noop): without
// --wait it prints the job id (JSON: an object with "id") and returns; with --wait it follows
// the job (see waitJob).
func startedJob(ctx context.Context, env *Env, client schedulerv1.SchedulerServiceClient, job *schedulerv1.Job, wait bool) error {
	if !wait {
		if env.Globals.Output == "json" {
			return env.printJSON(map[string]string{"id": job.GetId()})
		}
		fmt.Fprintln(env.Stdout, job.GetId())
		return nil
	}
	return waitJob(ctx, env, client, job.GetWorkspace(), job.GetId())
}

// waitJob follows a job with WatchJob until it ends, showing its progress: a progress bar on a
// terminal, a line per change otherwise (JSON: the final job). It returns an error (exit code
// 1) when the job ends in error or cancelled.
func waitJob(ctx context.Context, env *Env, client schedulerv1.SchedulerServiceClient, ws, id string) error {
	stream, err := client.WatchJob(ctx, &schedulerv1.WatchJobRequest{Workspace: ws, Id: id})
	if err != nil {
		return callError(err)
	}
	var last *schedulerv1.Job
	prevLine := ""
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return callError(err)
		}
		last = resp.GetJob()
		if env.Globals.Output == "json" {
			continue
		}
		line := progressLine(last, env.IsTerminal)
		if line == prevLine {
			continue
		}
		prevLine = line
		if env.IsTerminal {
			fmt.Fprintf(env.Stdout, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(env.Stdout, line)
		}
	}
	if last == nil {
		return &ExitError{Code: 1, Err: fmt.Errorf("job %s: the watch ended without a state", id)}
	}
	if env.Globals.Output == "json" {
		if err := env.printProto(last); err != nil {
			return err
		}
	} else if env.IsTerminal {
		fmt.Fprintln(env.Stdout)
	}
	switch last.GetStatus() {
	case schedulerv1.JobStatus_JOB_STATUS_DONE:
		return nil
	case schedulerv1.JobStatus_JOB_STATUS_ERROR:
		msg := last.GetError().GetMessage()
		if c := last.GetError().GetClickhouseCode(); c != 0 {
			msg = fmt.Sprintf("%s (ClickHouse code %d)", msg, c)
		}
		return &ExitError{Code: 1, Err: fmt.Errorf("job %s failed: %s", id, msg)}
	case schedulerv1.JobStatus_JOB_STATUS_CANCELLED:
		return &ExitError{Code: 1, Err: fmt.Errorf("job %s was cancelled", id)}
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("job %s: the watch ended while it was %s", id, statusWord(last.GetStatus()))}
}

// progressLine describes a job's progress: with a bar for a terminal.
func progressLine(j *schedulerv1.Job, bar bool) string {
	p := j.GetProgress()
	done, total := progressDone(p), progressTotal(p)
	unit := "steps"
	if p.GetPartitionsTotal() > 0 {
		unit = "partitions"
	}
	rows := p.GetStatistics().GetWrittenRows()
	text := fmt.Sprintf("job %s %s: %d/%d %s, %d rows written", j.GetId(), statusWord(j.GetStatus()), done, total, unit, rows)
	if r := j.GetWaitingReason(); r != "" {
		text += " (" + r + ")"
	}
	if !bar || total <= 0 {
		return text
	}
	const width = 30
	n := int(int64(width) * done / total)
	return "[" + strings.Repeat("#", n) + strings.Repeat(" ", width-n) + "] " + text
}

// progressDone and progressTotal count a populate's progress in source partitions (a step may
// group several), any other job's in steps.
func progressDone(p *schedulerv1.JobProgress) int64 {
	if p.GetPartitionsTotal() > 0 {
		return p.GetPartitionsDone()
	}
	return p.GetStepsDone()
}

func progressTotal(p *schedulerv1.JobProgress) int64 {
	if p.GetPartitionsTotal() > 0 {
		return p.GetPartitionsTotal()
	}
	return p.GetStepsTotal()
}
