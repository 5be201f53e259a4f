package auth

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// Bearer is gRPC per-call credentials that send a token as `authorization: Bearer <token>`.
// It does not insist on TLS: all-in-one processes call themselves over loopback in plaintext,
// and split installations are warned at start when they run without TLS.
type Bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b Bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (b Bearer) RequireTransportSecurity() bool { return false }

// ActingFor returns ctx whose outgoing calls act with the authority of the stored token name
// of workspace ws instead of the caller's own (honoured for the service credential and the
// operator token only). A scheduled copy renders its pipe with the copy's own token this way,
// so deleting that token, or taking its scope away, stops the copy.
func ActingFor(ctx context.Context, ws, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, OnBehalfOfHeader, ws+"/"+name)
}
