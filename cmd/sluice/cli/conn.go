package cli

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// addrs splits the --addr list.
func (g Globals) addrs() []string {
	var out []string
	for _, a := range strings.Split(g.Addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func dial(addr string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to sluiced at %s: %w", addr, err)
	}
	return cc, nil
}

// serviceConn connects to the address that serves the gRPC service named service: the only
// one, or in split mode the one whose health service knows it.
func serviceConn(ctx context.Context, env *Env, service string) (*grpc.ClientConn, error) {
	addrs := env.Globals.addrs()
	if len(addrs) == 0 {
		return nil, usageError("--addr: no address")
	}
	if len(addrs) == 1 {
		return dial(addrs[0])
	}
	for _, addr := range addrs {
		cc, err := dial(addr)
		if err != nil {
			return nil, err
		}
		cctx, cancel := context.WithTimeout(ctx, env.Globals.Timeout)
		resp, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{Service: service})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return cc, nil
		}
		_ = cc.Close()
	}
	return nil, fmt.Errorf("no address in --addr serves %s (%s)", service, strings.Join(addrs, ","))
}

// callError turns a gRPC error into the CLI's message: the server's text, which already says
// what is wrong and what to do.
func callError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if st.Code() == codes.Unavailable {
		return &ExitError{Code: 1, Err: fmt.Errorf("sluiced is not reachable: %s", st.Message())}
	}
	return &ExitError{Code: 1, Err: fmt.Errorf("%s", st.Message())}
}
