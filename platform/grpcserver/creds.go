package grpcserver

import (
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Sluice's services talk plaintext gRPC inside one trust boundary (loopback or a cluster
// network); TLS between services is a deployment concern (service mesh) for now.
func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
