package cli

import (
	"context"
	"flag"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// pipePopulateCommand is `sluice pipe populate NAME`: backfill a materialized pipe's target
// from its source Data Source, one job step per source partition (docs/populate.md).
func pipePopulateCommand() *command {
	var node, condition, cutoverColumn, cutoverValue, requestID string
	var truncate, onlyThisView, wait, snapshot bool
	var maxExec, cutoverIn time.Duration
	var budget uint64
	var parallelism int
	return &command{
		name:  "populate",
		short: "backfill a materialized pipe's target from its source, in steps of partitions",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&node, "node", "", "materialized node to populate (default: the pipe's one materialized node)")
			fs.BoolVar(&truncate, "truncate", false, "empty the target before populating it")
			fs.StringVar(&condition, "sql-condition", "", "populate only the source rows matching this SQL condition")
			fs.BoolVar(&onlyThisView, "only-this-view", false, "write the target only: do not propagate to the Data Sources downstream of it")
			fs.StringVar(&cutoverColumn, "cutover-column", "", "populate while ingestion goes on, with an incremental column: the view is changed to handle only rows with column > the cut-over, the target emptied, and once the cut-over has passed the populate writes the rows up to it")
			fs.StringVar(&cutoverValue, "cutover-value", "", "cut-over value, ahead of every row in the source, for example '2024-02-02 13:30:00'")
			fs.DurationVar(&cutoverIn, "cutover-in", 0, "cut-over this long from now (UTC, as a DateTime): the alternative to --cutover-value for a timestamp column")
			fs.BoolVar(&snapshot, "cutover-snapshot", false, "populate while ingestion goes on, without a cut-over column: empty the target (and downstream) and read only the rows inserted before the job starts; the view handles the rest")
			fs.DurationVar(&maxExec, "max-execution-time", 0, "maximum execution time (default: the server's)")
			fs.Uint64Var(&budget, "memory-budget", 0, "memory budget per step in bytes (default: the server's)")
			fs.IntVar(&parallelism, "parallelism", 0, "steps the data is spread over at least, so that as many executor slots can run them at once (default: the server's)")
			fs.BoolVar(&wait, "wait", false, "wait for the job to end, showing its progress")
			requestIDFlag(fs, &requestID)
		},
		run: func(ctx context.Context, env *Env, args []string) error {
			if len(args) != 1 {
				return usageError("pipe populate NAME [--node N] [--truncate] [--sql-condition SQL] [--only-this-view] [--wait]")
			}
			if cutoverIn > 0 {
				if cutoverValue != "" {
					return usageError("pipe populate: give --cutover-value or --cutover-in, not both")
				}
				cutoverValue = time.Now().UTC().Add(cutoverIn).Truncate(time.Second).Format(time.DateTime)
			}
			if (cutoverColumn == "") != (cutoverValue == "") {
				return usageError("pipe populate: --cutover-column goes with --cutover-value or --cutover-in")
			}
			client, err := schedulerClient(ctx, env)
			if err != nil {
				return err
			}
			req := &schedulerv1.PopulateRequest{
				Workspace: env.Globals.Workspace, Pipe: args[0], Node: node, MemoryBudgetBytes: budget, Parallelism: int32(min(max(parallelism, -1), 1<<20)),
				Options: &schedulerv1.PopulateOptions{
					Truncate: truncate, SqlCondition: condition, OnlyThisView: onlyThisView,
					CutoverColumn: cutoverColumn, CutoverValue: cutoverValue, CutoverSnapshot: snapshot,
				},
			}
			if maxExec > 0 {
				req.MaxExecutionTime = durationpb.New(maxExec)
			}
			var resp *schedulerv1.PopulateResponse
			err = env.once(ctx, &requestID, env.Globals.Timeout, func(ctx context.Context, id string) (err error) {
				req.RequestId = id
				resp, err = client.Populate(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return startedJob(ctx, env, client, resp.GetJob(), wait)
		},
	}
}
