package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/sluicehq/sluice/api/descriptors"
	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/natsx"
)

// The generated packages, so that every file of the API is compiled in (and registered).
var _ = []any{catalogv1.File_sluice_catalog_v1_catalog_proto, executorv1.File_sluice_executor_v1_executor_proto,
	opslogv1.File_sluice_opslog_v1_opslog_proto, schedulerv1.File_sluice_scheduler_v1_scheduler_proto,
	persistencev1.File_sluice_persistence_v1_jobs_proto, persistencev1.File_sluice_persistence_v1_commits_proto,
	persistencev1.File_sluice_persistence_v1_schedules_proto}

// internalPrefix starts the files of what Sluice keeps in NATS, which are internal.
const (
	internalPrefix = "sluice/persistence/"
	internalFile   = internalPrefix + "v1/jobs.proto"
)

func internal(name string) bool { return strings.HasPrefix(name, internalPrefix) }

// startReflection serves the catalog service (unimplemented: reflection only lists it) on a
// real server, socket and gate, and returns a reflection client.
func startReflection(t *testing.T) *grpc.ClientConn {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	nc, err := natsx.Connect(context.Background(), natsx.Config{StoreDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	v, err := auth.NewVerifier(auth.Config{MaxStaleness: time.Minute}, nc, "", log)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Addr: "127.0.0.1:0", Log: log, Tracer: noop.NewTracerProvider(), Propagator: propagation.TraceContext{}, Gate: auth.NewGate(v, log)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	catalogv1.RegisterCatalogServiceServer(s.GRPC, catalogv1.UnimplementedCatalogServiceServer{})
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// ask sends one reflection request (no token: reflection is open) and returns the answer.
func ask(t *testing.T, cc *grpc.ClientConn, req *reflectionv1.ServerReflectionRequest) *reflectionv1.ServerReflectionResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(req); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = st.CloseSend()
	return resp
}

// askAlpha asks the deprecated v1alpha reflection service, which grpcurl falls back to and older
// clients still use, for one file by name.
func askAlpha(t *testing.T, cc *grpc.ClientConn, file string) *descriptorpb.FileDescriptorProto {
	t.Helper()
	st, err := reflectionv1alpha.NewServerReflectionClient(cc).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	//nolint:staticcheck // v1alpha is deprecated, and still served for the clients that use it
	if err := st.Send(&reflectionv1alpha.ServerReflectionRequest{MessageRequest: &reflectionv1alpha.ServerReflectionRequest_FileByFilename{FileByFilename: file}}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	files := resp.GetFileDescriptorResponse().GetFileDescriptorProto() //nolint:staticcheck // as above
	if err != nil || len(files) == 0 {
		t.Fatalf("v1alpha %s: %v %v", file, resp, err)
	}
	fd := &descriptorpb.FileDescriptorProto{}
	if err := proto.Unmarshal(files[0], fd); err != nil {
		t.Fatal(err)
	}
	return fd
}

func filesOf(t *testing.T, resp *reflectionv1.ServerReflectionResponse) map[string]*descriptorpb.FileDescriptorProto {
	t.Helper()
	if e := resp.GetErrorResponse(); e != nil {
		t.Fatalf("reflection error: %v", e)
	}
	out := map[string]*descriptorpb.FileDescriptorProto{}
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			t.Fatal(err)
		}
		out[fd.GetName()] = fd
	}
	return out
}

// comment is the leading comment of the element at path in fd ("" when it has none).
func comment(fd *descriptorpb.FileDescriptorProto, path ...int32) string {
	for _, l := range fd.GetSourceCodeInfo().GetLocation() {
		if slices.Equal(l.GetPath(), path) {
			return l.GetLeadingComments()
		}
	}
	return ""
}

// TestReflectionCarriesTheAPIComments asks a running server, as grpcurl does, for the file of a
// service and of a message, and finds proto/'s comments on the service, its RPCs and fields.
func TestReflectionCarriesTheAPIComments(t *testing.T) {
	cc := startReflection(t)
	resp := ask(t, cc, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "sluice.catalog.v1.CatalogService"}})
	files := filesOf(t, resp)
	cat := files["sluice/catalog/v1/catalog.proto"]
	if cat == nil {
		t.Fatalf("no catalog.proto in %v", files)
	}
	// Path 6,0 is the first service; 6,0,2,0 its first RPC; 4,i,2,j field j of message i.
	if got := comment(cat, 6, 0); !strings.Contains(got, "CatalogService keeps users' projects") {
		t.Errorf("service comment %q", got)
	}
	if got := comment(cat, 6, 0, 2, 0); !strings.Contains(got, "CreateWorkspace creates a workspace") || !strings.Contains(got, "REQUEST_ID_REUSED") {
		t.Errorf("CreateWorkspace comment %q", got)
	}
	var push int32 = -1
	for i, m := range cat.GetMessageType() {
		if m.GetName() == "PushRequest" {
			push = int32(i)
		}
	}
	var reqID int32 = -1
	for i, f := range cat.GetMessageType()[push].GetField() {
		if f.GetName() == "request_id" {
			reqID = int32(i)
		}
	}
	if got := comment(cat, 4, push, 2, reqID); !strings.Contains(got, "Idempotency key (AIP-155)") {
		t.Errorf("PushRequest.request_id comment %q", got)
	}

	// The v1alpha service (grpcurl's fallback) answers the same.
	fd := askAlpha(t, cc, "sluice/common/v1/errors.proto")
	if got := comment(fd, 5, 0); !strings.Contains(got, "ErrorReason is the stable reason") {
		t.Errorf("v1alpha ErrorReason comment %q", got)
	}

	// Services are listed; health, which is not Sluice's, still resolves.
	list := ask(t, cc, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
	var names []string
	for _, s := range list.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "sluice.catalog.v1.CatalogService") || !slices.Contains(names, "grpc.health.v1.Health") {
		t.Errorf("services %v", names)
	}
	if files := filesOf(t, ask(t, cc, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "grpc.health.v1.Health"}})); len(files) == 0 {
		t.Error("grpc.health.v1.Health does not resolve")
	}
}

// TestReflectionHidesInternalMessages: what the scheduler and executors keep in NATS is compiled
// into the server but is no part of the API, and reflection does not show it.
func TestReflectionHidesInternalMessages(t *testing.T) {
	cc := startReflection(t)
	for _, req := range []*reflectionv1.ServerReflectionRequest{
		{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: "sluice.persistence.v1.JobRecord"}},
		{MessageRequest: &reflectionv1.ServerReflectionRequest_FileByFilename{FileByFilename: internalFile}},
	} {
		if resp := ask(t, cc, req); resp.GetErrorResponse() == nil {
			t.Errorf("%v answered %d files, want not found", req.GetMessageRequest(), len(resp.GetFileDescriptorResponse().GetFileDescriptorProto()))
		}
	}
	// The public files still resolve, without a dependency on it.
	files := filesOf(t, ask(t, cc, &reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "sluice.scheduler.v1.RunCopyRequest"}}))
	for name, fd := range files {
		if internal(name) || slices.ContainsFunc(fd.GetDependency(), internal) {
			t.Errorf("reflection handed out %s (dependencies %v)", name, fd.GetDependency())
		}
	}
}

// TestReflectionDescriptorsMatchTheCompiledAPI: the embedded descriptors (with comments) are
// the compiled-in API file for file, apart from comments and options, and name every public
// file; a stale descriptors.binpb (make generate not run) fails here as well as in
// generate-check.
func TestReflectionDescriptorsMatchTheCompiledAPI(t *testing.T) {
	set, err := descriptors.Set()
	if err != nil {
		t.Fatal(err)
	}
	embedded := map[string]bool{}
	for _, fd := range set.GetFile() {
		embedded[fd.GetName()] = true
		if !strings.HasPrefix(fd.GetName(), "sluice/") {
			continue
		}
		compiled, err := protoregistry.GlobalFiles.FindFileByPath(fd.GetName())
		if err != nil {
			t.Errorf("%s is in the descriptors but not compiled in: %v", fd.GetName(), err)
			continue
		}
		if len(fd.GetSourceCodeInfo().GetLocation()) == 0 {
			t.Errorf("%s carries no source info", fd.GetName())
		}
		want := protodesc.ToFileDescriptorProto(compiled)
		got := proto.Clone(fd).(*descriptorpb.FileDescriptorProto)
		got.SourceCodeInfo, got.Options, want.SourceCodeInfo, want.Options = nil, nil, nil, nil
		if !proto.Equal(got, want) {
			t.Errorf("%s differs from the compiled API: run make generate", fd.GetName())
		}
	}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		p := fd.Path()
		if strings.HasPrefix(p, "sluice/") && !internal(p) && !embedded[p] {
			t.Errorf("%s is compiled in but not in the descriptors: run make generate", p)
		}
		return true
	})
	for name := range embedded {
		if internal(name) {
			t.Errorf("%s is internal and must stay out of the descriptors", name)
		}
	}
}
