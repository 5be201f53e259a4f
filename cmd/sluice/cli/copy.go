package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// pipeCopyCommand is `sluice pipe copy run|pause|resume|ls`.
func pipeCopyCommand() *command {
	return &command{name: "copy", short: "run Copy Pipes and pause or resume their schedules", subs: []*command{
		pipeCopyRunCommand(),
		pipeCopyPauseCommand(true),
		pipeCopyPauseCommand(false),
		pipeCopyLsCommand(),
	}}
}

// paramFlag collects repeated --param k=v.
type paramFlag map[string]string

func (p paramFlag) String() string {
	var parts []string
	for k, v := range p {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (p paramFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	p[strings.TrimSpace(k)] = val
	return nil
}

// parseJobTimestamp reads --job-timestamp: RFC 3339, or `YYYY-MM-DD[ HH:MM:SS]` in UTC.
func parseJobTimestamp(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("--job-timestamp: %q is not a time such as 2024-06-01 13:00:00 (UTC) or 2024-06-01T13:00:00Z", s)
}

func pipeCopyRunCommand() *command {
	params := paramFlag{}
	var jobTS, mode, node string
	var maxExec time.Duration
	var wait bool
	var requestID string
	return &command{
		name:  "run",
		short: "run a Copy Pipe now: NAME [--node N] [--param k=v ...] [--job-timestamp T] [--mode append|replace] [--wait]",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&node, "node", "", "the copy node (a pipe has one; checked when given)")
			fs.Var(params, "param", "parameter value key=value (repeatable); missing ones take their defaults")
			fs.StringVar(&jobTS, "job-timestamp", "", "job_timestamp the query sees (UTC; default: when the job is received)")
			fs.StringVar(&mode, "mode", "", "append or replace (default: the pipe's COPY_MODE)")
			fs.DurationVar(&maxExec, "max-execution-time", 0, "maximum execution time (default: the server's)")
			fs.BoolVar(&wait, "wait", false, "wait for the job to end, showing its progress")
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("pipe copy run NAME [--param k=v ...] [--job-timestamp T] [--mode append|replace] [--wait]")
			}
			req := &schedulerv1.RunCopyRequest{Workspace: env.Globals.Workspace, Pipe: args[0], Parameters: params}
			switch strings.ToLower(mode) {
			case "":
			case "append":
				req.Mode = commonv1.CopyMode_COPY_MODE_APPEND
			case "replace":
				req.Mode = commonv1.CopyMode_COPY_MODE_REPLACE
			default:
				return usageError("--mode: %q is not append or replace", mode)
			}
			if jobTS != "" {
				t, err := parseJobTimestamp(jobTS)
				if err != nil {
					return usageError("%v", err)
				}
				req.JobTimestamp = timestamppb.New(t)
			}
			if maxExec > 0 {
				req.MaxExecutionTime = durationpb.New(maxExec)
			}
			if node != "" {
				if err := checkCopyNode(ctx, env, args[0], node); err != nil {
					return err
				}
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			var resp *schedulerv1.RunCopyResponse
			err = env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (err error) {
				req.RequestId = id
				resp, err = client.RunCopy(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return startedJob(ctx, env, client, resp.GetJob(), wait)
		},
	}
}

func pipeCopyPauseCommand(pause bool) *command {
	name, short := "pause", "pause a Copy Pipe's schedule (survives restarts)"
	if !pause {
		name, short = "resume", "resume a paused schedule from its next tick"
	}
	var requestID string
	return &command{
		name: name, short: short,
		flags: func(fs *flag.FlagSet) { requestIDFlag(fs, &requestID) },
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("pipe copy %s NAME", name)
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			var sch *schedulerv1.CopySchedule
			err = env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) error {
				if pause {
					resp, err := client.PauseCopySchedule(ctx, &schedulerv1.PauseCopyScheduleRequest{Workspace: env.Globals.Workspace, Pipe: args[0], RequestId: id})
					sch = resp.GetSchedule()
					return err
				}
				resp, err := client.ResumeCopySchedule(ctx, &schedulerv1.ResumeCopyScheduleRequest{Workspace: env.Globals.Workspace, Pipe: args[0], RequestId: id})
				sch = resp.GetSchedule()
				return err
			})
			if err != nil {
				return err
			}
			if env.Globals.Output == "json" {
				return env.printProto(sch)
			}
			fmt.Fprintf(env.Stdout, "copy schedule of %s (%s): %s\n", sch.GetPipe(), sch.GetCron(), scheduleWord(sch))
			return nil
		},
	}
}

func scheduleWord(s *schedulerv1.CopySchedule) string {
	if s.GetPaused() {
		return "paused"
	}
	if s.GetNextTick() != nil {
		return "running, next tick " + s.GetNextTick().AsTime().UTC().Format("2006-01-02 15:04:05") + " UTC"
	}
	return "running"
}

func pipeCopyLsCommand() *command {
	return &command{
		name: "ls", short: "list the copy schedules of the workspace",
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) > 0 {
				return usageError("pipe copy ls: unexpected argument %q", args[0])
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			resp := &schedulerv1.ListCopySchedulesResponse{}
			if resp.Schedules, err = listAll(ctx, env, func(ctx context.Context, token string) ([]*schedulerv1.CopySchedule, string, error) {
				page, err := client.ListCopySchedules(ctx, &schedulerv1.ListCopySchedulesRequest{Workspace: env.Globals.Workspace, PageSize: 1000, PageToken: token})
				return page.GetSchedules(), page.GetNextPageToken(), err
			}); err != nil {
				return err
			}
			return env.printTable(resp, "PIPE\tSCHEDULE\tSTATE\tLAST TICK\tNEXT TICK", func(tw io.Writer) {
				ts := func(t *timestamppb.Timestamp) string {
					if t == nil {
						return "-"
					}
					return t.AsTime().UTC().Format("2006-01-02 15:04:05")
				}
				for _, s := range resp.GetSchedules() {
					state := "running"
					if s.GetPaused() {
						state = "paused"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.GetPipe(), s.GetCron(), state, ts(s.GetLastTick()), ts(s.GetNextTick()))
				}
			})
		},
	}
}

// checkCopyNode refuses --node when it is not the pipe's copy node: a pipe has one copy node,
// which every run runs.
func checkCopyNode(ctx context.Context, env *Env, pipe, node string) error {
	client, err := catalogClient(ctx, env)
	if err != nil {
		return err
	}
	resp, err := call(ctx, env, client.GetPipe, &catalogv1.GetPipeRequest{Workspace: env.Globals.Workspace, Name: pipe})
	if err != nil {
		return callError(err)
	}
	copyNode := ""
	for _, n := range resp.GetPipe().GetNodes() {
		if n.GetType() == catalogv1.NodeType_NODE_TYPE_COPY {
			copyNode = n.GetName()
		}
	}
	switch {
	case copyNode == "":
		return usageError("pipe %s has no copy node (TYPE COPY)", pipe)
	case copyNode != node:
		return usageError("--node %s: the copy node of pipe %s is %s (a pipe has one copy node)", node, pipe, copyNode)
	}
	return nil
}
