// Package client is how other programs reach the ingest service over gRPC, and the names the
// ingest service shares with the catalog.
package client

import (
	"google.golang.org/grpc"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// Client is the ingest service's generated client.
type Client = ingestv1.IngestServiceClient

// New returns an ingest client on a connection.
func New(cc grpc.ClientConnInterface) Client { return ingestv1.NewIngestServiceClient(cc) }
