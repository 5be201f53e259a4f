package app

import "google.golang.org/grpc"

type grpcRegistrar = grpc.ServiceRegistrar
