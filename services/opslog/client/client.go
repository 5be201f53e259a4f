// Package client is how other services reach the ops log: over gRPC, also inside one process.
package client

import (
	"google.golang.org/grpc"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
)

// Client is the ops log's generated client.
type Client = opslogv1.OpsLogServiceClient

// New returns an ops-log client on a connection.
func New(cc grpc.ClientConnInterface) Client { return opslogv1.NewOpsLogServiceClient(cc) }
