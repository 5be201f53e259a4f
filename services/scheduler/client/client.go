// Package client is how other services reach the scheduler: over gRPC, also inside one process.
package client

import (
	"google.golang.org/grpc"

	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
)

// Client is the scheduler's generated client.
type Client = schedulerv1.SchedulerServiceClient

// New returns a scheduler client on a connection.
func New(cc grpc.ClientConnInterface) Client { return schedulerv1.NewSchedulerServiceClient(cc) }
