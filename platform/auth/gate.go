package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// OnBehalfOfHeader is the metadata key with which the service credential (or the operator)
// acts with another token's authority: "<workspace>/<token name>". A scheduled copy renders
// its pipe with the copy's own token this way.
const OnBehalfOfHeader = "sluice-on-behalf-of"

// Gate applies Rules to gRPC calls (interceptors) and HTTP requests (Wrap).
type Gate struct {
	v     *Verifier
	rules map[string]Rule
	log   *slog.Logger
	// streamCheck is how often a long stream checks that its token is still valid.
	streamCheck time.Duration
}

// NewGate builds the gate for v with the table Rules.
func NewGate(v *Verifier, log *slog.Logger) *Gate {
	return &Gate{v: v, rules: Rules, log: log, streamCheck: 500 * time.Millisecond}
}

// CheckServices returns an error naming every registered RPC without a rule (a server must not
// serve it: it would be refused at every call anyway).
func (g *Gate) CheckServices(services map[string]grpc.ServiceInfo) error {
	var missing []string
	for svc, info := range services {
		for _, m := range info.Methods {
			name := "/" + svc + "/" + m.Name
			if _, ok := g.rules[name]; !ok {
				missing = append(missing, name)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("RPCs without an entry in the scope table (platform/auth/rules.go; see docs/security.md): %s", strings.Join(missing, ", "))
	}
	return nil
}

// PresentedToken is the token a gRPC call's metadata carries ("" for none or a malformed
// header: the gate has refused such calls before a handler runs).
func PresentedToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	tok, err := bearer(md)
	if err != nil {
		return ""
	}
	return tok
}

// bearer returns the token of the call's metadata.
func bearer(md metadata.MD) (string, error) {
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return "", nil
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	return parseBearer(vals[0])
}

func parseBearer(h string) (string, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", status.Error(codes.Unauthenticated, "authorization must be `Bearer <token>`")
	}
	return strings.TrimSpace(tok), nil
}

// authenticate verifies the call's token and resolves acting on behalf of another token.
func (g *Gate) authenticate(ctx context.Context) (*Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tok, err := bearer(md)
	if err != nil {
		return nil, err
	}
	p, err := g.v.Authenticate(ctx, tok)
	if err != nil {
		return nil, err
	}
	if vals := md.Get(OnBehalfOfHeader); len(vals) > 0 {
		if !p.Unrestricted() {
			return nil, status.Errorf(codes.PermissionDenied, "%s may not act for another token", p.Describe())
		}
		ws, name, ok := strings.Cut(vals[0], "/")
		if !ok || ws == "" || name == "" || len(vals) > 1 {
			return nil, status.Errorf(codes.InvalidArgument, "%s must be <workspace>/<token name>", OnBehalfOfHeader)
		}
		other, err := g.v.Lookup(ctx, ws, name)
		if err != nil {
			return nil, err
		}
		p.OnBehalfOf = other
	}
	return p, nil
}

// fields reads and writes the request fields a rule names: proto fields of a gRPC request,
// query parameters of an HTTP request.
type fields interface {
	get(path string) (string, error)
	set(path, v string) error
}

type protoFields struct{ m protoreflect.Message }

func (f protoFields) get(path string) (string, error) { return getString(f.m, path) }
func (f protoFields) set(path, v string) error        { return setString(f.m, path, v) }

type queryFields struct{ r *http.Request }

func (f queryFields) get(path string) (string, error) { return f.r.URL.Query().Get(path), nil }
func (f queryFields) set(path, v string) error {
	q := f.r.URL.Query()
	q.Set(path, v)
	f.r.URL.RawQuery = q.Encode()
	return nil
}

// authorize checks p against rule for a request's fields (nil when it has none), filling in
// the token's workspace when the request leaves it empty.
func authorize(p *Principal, method string, rule Rule, req fields) error {
	e := p.effective()
	switch rule.Access {
	case Open, Authenticated:
		return nil
	case Operator:
		if e.Unrestricted() {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "%s needs the operator token; %s is not", method, p.Describe())
	case Instance:
		for _, n := range rule.AnyOf {
			if p.Allows("", Scope{Type: n.Type}) {
				return nil
			}
		}
		return status.Errorf(codes.PermissionDenied, "%s needs %s; %s lacks it", method, needsText(rule.AnyOf), p.Describe())
	case Workspace:
	default:
		return status.Errorf(codes.Internal, "%s: no access rule", method)
	}
	if req == nil {
		return status.Errorf(codes.Internal, "%s: a workspace rule needs a request", method)
	}
	wsField := rule.WorkspaceField
	if wsField == "" {
		wsField = "workspace"
	}
	ws, err := req.get(wsField)
	if err != nil {
		return status.Errorf(codes.Internal, "%s: scope table: %v", method, err)
	}
	switch {
	case ws == "" && e.Workspace != "":
		if err := req.set(wsField, e.Workspace); err != nil {
			return status.Errorf(codes.Internal, "%s: scope table: %v", method, err)
		}
		ws = e.Workspace
	case ws == "" && e.Unrestricted():
		if rule.InstanceOK {
			return nil
		}
		return status.Errorf(codes.InvalidArgument, "%s: required: %s acts on any workspace, so the request must name one (sluice --workspace NAME)", wsField, p.Describe())
	case ws == "":
		return status.Errorf(codes.PermissionDenied, "%s belongs to no workspace", p.Describe())
	case !e.Unrestricted() && ws != e.Workspace:
		return status.Errorf(codes.PermissionDenied, "%s may not act on workspace %s", p.Describe(), ws)
	}
	if len(rule.AnyOf) == 0 {
		return nil
	}
	var wanted []string
	for _, n := range rule.AnyOf {
		s := Scope{Type: n.Type}
		if n.ResourceField != "" {
			r, err := req.get(n.ResourceField)
			if err != nil {
				return status.Errorf(codes.Internal, "%s: scope table: %v", method, err)
			}
			s.Resource = r
		}
		if p.Allows(ws, s) {
			return nil
		}
		wanted = append(wanted, s.String())
	}
	return status.Errorf(codes.PermissionDenied, "%s lacks scope %s in workspace %s", p.Describe(), strings.Join(wanted, " or "), ws)
}

func needsText(ns []Need) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = string(n.Type)
	}
	return strings.Join(parts, " or ")
}

// getString reads a string field by a dotted path of proto field names; unset messages on the
// way read as empty.
func getString(m protoreflect.Message, path string) (string, error) {
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return "", fmt.Errorf("%s has no field %q", m.Descriptor().FullName(), name)
		}
		if i == len(parts)-1 {
			if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
				return "", fmt.Errorf("%s.%s is not a string", m.Descriptor().FullName(), name)
			}
			return m.Get(fd).String(), nil
		}
		if fd.Message() == nil || fd.IsList() || fd.IsMap() {
			return "", fmt.Errorf("%s.%s is not a message", m.Descriptor().FullName(), name)
		}
		if !m.Has(fd) {
			// Check the rest of the path against the descriptor, then read empty.
			return "", checkPath(fd.Message(), parts[i+1:])
		}
		m = m.Get(fd).Message()
	}
	return "", nil
}

func checkPath(md protoreflect.MessageDescriptor, parts []string) error {
	for i, name := range parts {
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return fmt.Errorf("%s has no field %q", md.FullName(), name)
		}
		if i == len(parts)-1 {
			if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
				return fmt.Errorf("%s.%s is not a string", md.FullName(), name)
			}
			return nil
		}
		if fd.Message() == nil {
			return fmt.Errorf("%s.%s is not a message", md.FullName(), name)
		}
		md = fd.Message()
	}
	return nil
}

// setString writes a string field by a dotted path, creating messages on the way.
func setString(m protoreflect.Message, path, v string) error {
	parts := strings.Split(path, ".")
	for i, name := range parts {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return fmt.Errorf("%s has no field %q", m.Descriptor().FullName(), name)
		}
		if i == len(parts)-1 {
			m.Set(fd, protoreflect.ValueOfString(v))
			return nil
		}
		m = m.Mutable(fd).Message()
	}
	return nil
}

// CheckRuleFields reports rules whose fields do not exist in their method's request message;
// resolve returns a method's request descriptor.
func CheckRuleFields(resolve func(method string) (protoreflect.MessageDescriptor, bool)) error {
	var errs []error
	for method, r := range Rules {
		if r.Access != Workspace || !strings.HasPrefix(method, "/") {
			continue // HTTP endpoints ("POST /v0/events") name URL query parameters, not fields
		}
		md, ok := resolve(method)
		if !ok {
			continue
		}
		f := r.WorkspaceField
		if f == "" {
			f = "workspace"
		}
		paths := []string{f}
		for _, n := range r.AnyOf {
			if n.ResourceField != "" {
				paths = append(paths, n.ResourceField)
			}
			if scopeTypes[n.Type].resource != (n.ResourceField != "") {
				errs = append(errs, fmt.Errorf("%s: scope %s and resource field %q do not match", method, n.Type, n.ResourceField))
			}
		}
		for _, p := range paths {
			if err := checkPath(md, strings.Split(p, ".")); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", method, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (g *Gate) rule(method string) (Rule, error) {
	r, ok := g.rules[method]
	if !ok {
		// Fail closed: servers refuse to start with such a method, so this is a wiring mistake.
		return Rule{}, status.Errorf(codes.PermissionDenied, "%s has no entry in the scope table", method)
	}
	return r, nil
}

func (g *Gate) refused(method string, err error) error {
	g.log.Info("call refused", "method", method, "code", status.Code(err).String(), "reason", status.Convert(err).Message())
	return err
}

// Unary is the interceptor for unary RPCs.
func (g *Gate) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		rule, err := g.rule(info.FullMethod)
		if err != nil {
			return nil, g.refused(info.FullMethod, err)
		}
		if rule.Access == Open {
			return handler(ctx, req)
		}
		p, err := g.authenticate(ctx)
		if err != nil {
			return nil, g.refused(info.FullMethod, err)
		}
		if err := authorize(p, info.FullMethod, rule, requestFields(req)); err != nil {
			return nil, g.refused(info.FullMethod, err)
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// Stream is the interceptor for streaming RPCs: the token is verified when the stream opens,
// every request message is authorized as it arrives, and the stream ends UNAUTHENTICATED when
// its token is revoked or rotated while it runs.
func (g *Gate) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		rule, err := g.rule(info.FullMethod)
		if err != nil {
			return g.refused(info.FullMethod, err)
		}
		if rule.Access == Open {
			return handler(srv, ss)
		}
		p, err := g.authenticate(ss.Context())
		if err != nil {
			return g.refused(info.FullMethod, err)
		}
		ctx, cancel := context.WithCancel(WithPrincipal(ss.Context(), p))
		defer cancel()
		var revoked atomic.Bool
		go func() {
			t := time.NewTicker(g.streamCheck)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if !g.v.StillValid(p) {
						revoked.Store(true)
						cancel()
						return
					}
				}
			}
		}()
		ws := &guardedStream{ServerStream: ss, ctx: ctx, check: func(m any) error {
			if err := authorize(p, info.FullMethod, rule, requestFields(m)); err != nil {
				return g.refused(info.FullMethod, err)
			}
			return nil
		}}
		err = handler(srv, ws)
		if revoked.Load() {
			return status.Errorf(codes.Unauthenticated, "%s was revoked or rotated while the stream ran", p.Describe())
		}
		return err
	}
}

func requestFields(req any) fields {
	if m, ok := req.(proto.Message); ok {
		return protoFields{m.ProtoReflect()}
	}
	return nil
}

type guardedStream struct {
	grpc.ServerStream
	ctx   context.Context
	check func(m any) error
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.check(m)
}

// Wrap guards an HTTP handler with the rule of pattern ("METHOD /path"); an endpoint without a
// rule is an error, so it cannot be served unguarded. For HTTP, a rule's WorkspaceField and
// ResourceFields name URL query parameters (`?name=events`); a workspace token needs no
// workspace parameter. The handler finds the principal with FromContext.
func (g *Gate) Wrap(pattern string, h http.Handler) (http.Handler, error) {
	rule, ok := g.rules[pattern]
	if !ok {
		return nil, fmt.Errorf("HTTP endpoint %q has no entry in the scope table (platform/auth/rules.go; see docs/security.md)", pattern)
	}
	if rule.Access == Open {
		return h, nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authorizeHTTP(r, pattern, rule)
		if err != nil {
			writeHTTPError(w, g.refused(pattern, err))
			return
		}
		h.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	}), nil
}

func (g *Gate) authorizeHTTP(r *http.Request, pattern string, rule Rule) (*Principal, error) {
	tok := ""
	if h := r.Header.Get("Authorization"); h != "" {
		var err error
		if tok, err = parseBearer(h); err != nil {
			return nil, err
		}
	}
	p, err := g.v.Authenticate(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	return p, authorize(p, pattern, rule, queryFields{r})
}

// writeHTTPError answers with the HTTP status of a gRPC status error.
func writeHTTPError(w http.ResponseWriter, err error) {
	st := status.Convert(err)
	code := http.StatusInternalServerError
	switch st.Code() {
	case codes.Unauthenticated:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
		code = http.StatusUnauthorized
	case codes.PermissionDenied:
		code = http.StatusForbidden
	case codes.Unavailable:
		code = http.StatusServiceUnavailable
	case codes.InvalidArgument:
		code = http.StatusBadRequest
	}
	http.Error(w, st.Message(), code)
}

// RuleKeys lists the table's keys, sorted (for tests and docs).
func RuleKeys() []string {
	keys := make([]string, 0, len(Rules))
	for k := range Rules {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
