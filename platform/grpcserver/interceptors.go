package grpcserver

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/idempotency"
)

// Every call goes through, in order: panic recovery, the error mapping (apierr.Status: every
// error leaves with ErrorInfo and the details that apply), the auth gate (platform/auth), the
// request check (undefined enum values are refused), and request ids (idempotency.Store, which
// keeps each caller's ids apart).

func errorsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, apierr.Status(err).Err()
	}
	return resp, nil
}

func errorsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := handler(srv, ss); err != nil {
		return apierr.Status(err).Err()
	}
	return nil
}

func validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if err := CheckEnums(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &checkedStream{ServerStream: ss})
}

// checkedStream checks each message the handler receives.
type checkedStream struct{ grpc.ServerStream }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		return CheckEnums(pm)
	}
	return nil
}

// CheckEnums refuses a message holding an enum value its enum does not define (proto3 enums
// are open: such a value would otherwise be accepted and stored). The error names the field
// and lists the defined values.
func CheckEnums(m proto.Message) error {
	return checkEnums(m.ProtoReflect(), "")
}

func checkEnums(m protoreflect.Message, prefix string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkValue(fd, l.Get(i), fmt.Sprintf("%s[%d]", path, i))
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkValue(fd.MapValue(), mv, fmt.Sprintf("%s[%v]", path, k.Interface()))
				return err == nil
			})
		default:
			err = checkValue(fd, v, path)
		}
		return err == nil
	})
	return err
}

func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		ed := fd.Enum()
		if ed.Values().ByNumber(v.Enum()) != nil {
			return nil
		}
		var valid []string
		for i := 0; i < ed.Values().Len(); i++ {
			valid = append(valid, string(ed.Values().Get(i).Name()))
		}
		sort.Strings(valid)
		return apierr.UnknownName(commonv1.ErrorReason_ERROR_REASON_INVALID_ARGUMENT, path, "value", fmt.Sprint(v.Enum()), valid)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkEnums(v.Message(), path+".")
	}
	return nil
}

// streamRequestID is the request id of a client stream's first message: its request_id, or
// that of the message it holds (the `start` of an append stream).
func streamRequestID(first proto.Message) string {
	if id := idempotency.RequestID(first); id != "" {
		return id
	}
	id := ""
	first.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap() {
			id = idempotency.RequestID(v.Message().Interface())
		}
		return id == ""
	})
	return id
}

// requestsStream applies request ids to client streams (a file sent in chunks): the id and the
// request it stands for are the first message's, since the chunks that follow may be far too
// many to compare; a retry with the same id gets the first call's answer and its chunks are
// not read.
func (s *Server) requestsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	st := s.requests.Load()
	if st == nil || !info.IsClientStream || info.IsServerStream {
		return handler(srv, ss)
	}
	msgType, err := requestType(info.FullMethod)
	if err != nil {
		return handler(srv, ss)
	}
	first := msgType.New().Interface()
	if err := ss.RecvMsg(first); err != nil {
		return err
	}
	replay := &replayStream{ServerStream: ss, first: first}
	id := streamRequestID(first)
	if id == "" {
		return handler(srv, replay)
	}
	replay.keep = true
	var caller idempotency.Caller
	if p, ok := auth.FromContext(ss.Context()); ok {
		caller = idempotency.Caller{ID: p.Key(), Secret: []byte(auth.PresentedToken(ss.Context()))}
	}
	resp, err := st.DoID(ss.Context(), caller, info.FullMethod, id, first, func(ctx context.Context) (proto.Message, error) {
		replay.ctx = ctx
		if err := handler(srv, replay); err != nil {
			return nil, err
		}
		if replay.sent == nil {
			return nil, fmt.Errorf("%s answered nothing", info.FullMethod)
		}
		return replay.sent, nil
	})
	if err != nil {
		return err
	}
	return ss.SendMsg(resp)
}

// requestType is the request message of a method ("/package.Service/Method").
func requestType(fullMethod string) (protoreflect.MessageType, error) {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil, fmt.Errorf("method %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil {
		return nil, fmt.Errorf("%s has no method %s", svc, method)
	}
	return protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
}

// replayStream hands the handler the first message again, then the rest of the stream, and
// keeps what the handler answers, to be sent once the answer is stored. (The stream it wraps
// checks each message's enums and token: the interceptors before this one wrapped it.)
type replayStream struct {
	grpc.ServerStream
	ctx   context.Context
	first proto.Message
	read  bool
	// keep holds the handler's answer in sent instead of sending it.
	keep bool
	sent proto.Message
}

func (r *replayStream) Context() context.Context {
	if r.ctx != nil {
		return r.ctx
	}
	return r.ServerStream.Context()
}

func (r *replayStream) RecvMsg(m any) error {
	if !r.read {
		r.read = true
		pm, ok := m.(proto.Message)
		if !ok {
			return fmt.Errorf("stream message %T is not a proto message", m)
		}
		proto.Merge(pm, r.first)
		return nil
	}
	return r.ServerStream.RecvMsg(m)
}

func (r *replayStream) SendMsg(m any) error {
	if !r.keep {
		return r.ServerStream.SendMsg(m)
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("stream answer %T is not a proto message", m)
	}
	r.sent = pm
	return nil
}

// SetRequestStore makes calls that carry a request_id run once per id (nil turns it off).
func (s *Server) SetRequestStore(st *idempotency.Store) { s.requests.Store(st) }

func (s *Server) requestsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	st := s.requests.Load()
	m, ok := req.(proto.Message)
	if st == nil || !ok {
		return handler(ctx, req)
	}
	var caller idempotency.Caller
	if p, ok := auth.FromContext(ctx); ok {
		caller = idempotency.Caller{ID: p.Key(), Secret: []byte(auth.PresentedToken(ctx))}
	}
	return st.Do(ctx, caller, info.FullMethod, m, func(ctx context.Context) (proto.Message, error) {
		resp, err := handler(ctx, req)
		if err != nil {
			return nil, err
		}
		pm, _ := resp.(proto.Message)
		return pm, nil
	})
}
