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

// ChangedSubject is the NATS subject on which the catalog announces that a workspace's
// resources changed (after a push or a delete). The message carries no data: subscribers read
// what they need through the API. Announcements are best-effort; subscribers also reconcile
// periodically.
func ChangedSubject(workspace string) string { return "sluice.catalog.changed." + workspace }

// ChangedSubjectAll matches every workspace's announcements.
const ChangedSubjectAll = "sluice.catalog.changed.*"
