// Package client is how other services reach the catalog: over gRPC, also inside one process.
package client

import (
	"google.golang.org/grpc"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// Client is the catalog's generated client.
type Client = catalogv1.CatalogServiceClient

// New returns a catalog client on a connection.
func New(cc grpc.ClientConnInterface) Client { return catalogv1.NewCatalogServiceClient(cc) }
