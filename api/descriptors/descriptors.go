// Package descriptors holds the public API's file descriptors with their source information
// (the comments of proto/), for server reflection: the descriptors compiled into the generated
// Go code carry no comments, because protoc-gen-go drops them. `make generate` builds
// descriptors.binpb with buf from proto/, leaving out what is internal to Sluice
// (sluice/persistence), and `make generate-check` fails when it is stale.
package descriptors

import (
	_ "embed"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:embed descriptors.binpb
var set []byte

// Set is the public API as a FileDescriptorSet, with the files it imports, comments included.
func Set() (*descriptorpb.FileDescriptorSet, error) {
	s := &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(set, s); err != nil {
		return nil, fmt.Errorf("api descriptors: %w", err)
	}
	return s, nil
}

// Files is the public API as a registry of file descriptors whose SourceLocations hold the
// comments.
func Files() (*protoregistry.Files, error) {
	s, err := Set()
	if err != nil {
		return nil, err
	}
	files, err := protodesc.NewFiles(s)
	if err != nil {
		return nil, fmt.Errorf("api descriptors: %w", err)
	}
	return files, nil
}
