package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// The pieces every command is made of: a client of a service, a call that changes something
// (once per request id), a listing read page by page, and the answer printed as JSON with
// -o json or for people otherwise.

var (
	catalogService   = catalogv1.CatalogService_ServiceDesc.ServiceName
	schedulerService = schedulerv1.SchedulerService_ServiceDesc.ServiceName
	opsLogService    = opslogv1.OpsLogService_ServiceDesc.ServiceName
)

// connect returns a client of the service (health service name) on a connection the command's
// calls share; Run closes it when the command ends.
func connect[C any](ctx context.Context, env *Env, service string, newClient func(grpc.ClientConnInterface) C) (C, error) {
	cc, ok := env.conns[service]
	if !ok {
		var err error
		if cc, err = serviceConn(ctx, env, service); err != nil {
			var none C
			return none, err
		}
		if env.conns == nil {
			env.conns = map[string]*grpc.ClientConn{}
		}
		env.conns[service] = cc
	}
	return newClient(cc), nil
}

// closeConns closes the connections the command opened.
func (e *Env) closeConns() {
	for _, cc := range e.conns {
		_ = cc.Close()
	}
	e.conns = nil
}

func catalogClient(ctx context.Context, env *Env) (catalogv1.CatalogServiceClient, error) {
	return connect(ctx, env, catalogService, catalogv1.NewCatalogServiceClient)
}

func tokenClient(ctx context.Context, env *Env) (catalogv1.TokenServiceClient, error) {
	return connect(ctx, env, catalogService, catalogv1.NewTokenServiceClient)
}

func schedulerClient(ctx context.Context, env *Env) (schedulerv1.SchedulerServiceClient, error) {
	return connect(ctx, env, schedulerService, schedulerv1.NewSchedulerServiceClient)
}

func opsLogClient(ctx context.Context, env *Env) (opslogv1.OpsLogServiceClient, error) {
	return connect(ctx, env, opsLogService, opslogv1.NewOpsLogServiceClient)
}

// change makes a call that changes something, once per request id, retried as once says,
// and returns its answer.
func change[Resp any](ctx context.Context, env *Env, requestID *string, timeout time.Duration, do func(ctx context.Context, id string) (Resp, error)) (Resp, error) {
	var resp Resp
	err := env.once(ctx, requestID, timeout, func(ctx context.Context, id string) (err error) {
		resp, err = do(ctx, id)
		return err
	})
	return resp, err
}

// listAll reads every page of a listing (each call with the command's --timeout): page
// returns a page's items and the next page's token.
func listAll[T any](ctx context.Context, env *Env, page func(ctx context.Context, token string) ([]T, string, error)) ([]T, error) {
	var all []T
	_, err := env.pages(ctx, "", func(ctx context.Context, token string) (string, error) {
		items, next, err := page(ctx, token)
		all = append(all, items...)
		return next, err
	})
	return all, callError(err)
}

// output prints the answer as JSON with -o json, else as human prints it.
func (e *Env) output(resp proto.Message, human func() error) error {
	if e.Globals.Output == "json" {
		return e.printProto(resp)
	}
	return human()
}

// printTable prints a listing: the answer as JSON with -o json, else a table of the header
// and the lines rows writes (tab-separated).
func (e *Env) printTable(resp proto.Message, header string, rows func(w io.Writer)) error {
	return e.output(resp, func() error {
		tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		rows(tw)
		return tw.Flush()
	})
}
