package dataflow

import "google.golang.org/grpc"

type grpcCallOption = grpc.CallOption
