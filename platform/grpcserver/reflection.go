package grpcserver

import (
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/api/descriptors"
)

// publicAPI resolves Sluice's own files and names from the public API's descriptors, which
// carry the comments of proto/ (the compiled-in ones do not), and nothing internal: a name or
// file of Sluice's that is not public is not found. Everything else (health, reflection itself)
// comes from the descriptors compiled in.
type publicAPI struct{ api *protoregistry.Files }

func ownPath(path string) bool                { return strings.HasPrefix(path, "sluice/") }
func ownName(name protoreflect.FullName) bool { return strings.HasPrefix(string(name), "sluice.") }

func (r publicAPI) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	if fd, err := r.api.FindFileByPath(path); err == nil || ownPath(path) {
		return fd, err
	}
	return protoregistry.GlobalFiles.FindFileByPath(path)
}

func (r publicAPI) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	if d, err := r.api.FindDescriptorByName(name); err == nil || ownName(name) {
		return d, err
	}
	return protoregistry.GlobalFiles.FindDescriptorByName(name)
}

// publicExtensions hides extensions of Sluice's internal files (it has none today).
type publicExtensions struct{}

func (publicExtensions) FindExtensionByName(field protoreflect.FullName) (protoreflect.ExtensionType, error) {
	if ownName(field) {
		return nil, protoregistry.NotFound
	}
	return protoregistry.GlobalTypes.FindExtensionByName(field)
}

func (publicExtensions) FindExtensionByNumber(message protoreflect.FullName, field protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(message, field)
}

func (publicExtensions) RangeExtensionsByMessage(message protoreflect.FullName, f func(protoreflect.ExtensionType) bool) {
	protoregistry.GlobalTypes.RangeExtensionsByMessage(message, f)
}

// registerReflection serves server reflection (v1 and v1alpha, which grpcurl and older clients
// use) from the public API's descriptors.
func registerReflection(g *grpc.Server) error {
	files, err := descriptors.Files()
	if err != nil {
		return fmt.Errorf("server reflection: %w", err)
	}
	opts := reflection.ServerOptions{Services: g, DescriptorResolver: publicAPI{api: files}, ExtensionResolver: publicExtensions{}}
	reflectionv1.RegisterServerReflectionServer(g, reflection.NewServerV1(opts))
	reflectionv1alpha.RegisterServerReflectionServer(g, reflection.NewServer(opts))
	return nil
}
