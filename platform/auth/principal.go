package auth

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Principal is who a call comes from, as its token says.
type Principal struct {
	Kind Kind
	// TokenID identifies a stored token (empty for the service credential and JWTs).
	TokenID string
	// Name is the token's name (the JWT's `name` or `sub` claim).
	Name string
	// Workspace is the workspace the token belongs to; empty for the operator, the service
	// credential and instance-level tokens.
	Workspace string
	Scopes    []Scope
	// Hash is the stored hash the token matched (a rotation changes it).
	Hash string
	// Expires is when a JWT stops being valid (zero for other tokens).
	Expires time.Time
	// OnBehalfOf is set when the service credential (or the operator) acts with another
	// token's authority: a scheduled copy runs with its own token.
	OnBehalfOf *Principal
}

// Unrestricted reports whether the principal may do anything anywhere: the operator token and
// the service credential.
func (p *Principal) Unrestricted() bool {
	return p.Kind == KindOperator || p.Kind == KindService
}

// effective is the principal whose scopes decide: the token acted for, if any.
func (p *Principal) effective() *Principal {
	if p.OnBehalfOf != nil {
		return p.OnBehalfOf
	}
	return p
}

// Allows reports whether the principal holds want in workspace ws.
func (p *Principal) Allows(ws string, want Scope) bool {
	e := p.effective()
	if e.Unrestricted() {
		return true
	}
	if want.Instance() {
		if e.Workspace != "" {
			return false
		}
	} else if e.Workspace == "" || e.Workspace != ws {
		return false
	}
	for _, held := range e.Scopes {
		if grants(held, want) {
			return true
		}
	}
	return false
}

// Key identifies the principal for things it owns, such as its request ids: the same for every
// call of one token (also after the token is rotated), different for any two tokens.
func (p *Principal) Key() string {
	id := p.TokenID
	if id == "" {
		id = p.Name
	}
	k := string(p.Kind) + "/" + p.Workspace + "/" + id
	if p.OnBehalfOf != nil {
		k += " for " + p.OnBehalfOf.Key()
	}
	return k
}

// Describe names the principal in errors and logs, without its secret.
func (p *Principal) Describe() string {
	if p.OnBehalfOf != nil {
		return p.OnBehalfOf.describeSelf() + " (used by " + p.describeSelf() + ")"
	}
	return p.describeSelf()
}

func (p *Principal) describeSelf() string {
	switch p.Kind {
	case KindOperator:
		return "the operator token"
	case KindService:
		return "the service credential"
	case KindJWT:
		return fmt.Sprintf("JWT %q of workspace %s", p.Name, p.Workspace)
	}
	if p.Workspace == "" {
		return fmt.Sprintf("instance token %q", p.Name)
	}
	return fmt.Sprintf("token %q of workspace %s", p.Name, p.Workspace)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal of the call, if the interceptor put one there.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// Require checks, inside a handler, that the caller holds every one of want in workspace ws:
// what a handler can only know by reading the request (the files of a push, the tables of a
// query). A call without a principal is refused: handlers are only reached through the
// interceptor, so that means a wiring mistake, and failing closed is the safe answer.
func Require(ctx context.Context, ws string, want ...Scope) error {
	if len(want) == 0 {
		return nil
	}
	p, ok := FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no credentials reached this handler")
	}
	var missing []string
	for _, w := range want {
		if !p.Allows(ws, w) {
			missing = append(missing, w.String())
		}
	}
	if len(missing) > 0 {
		return status.Errorf(codes.PermissionDenied, "%s lacks scope %s in workspace %s", p.Describe(), strings.Join(missing, ", "), ws)
	}
	return nil
}

// Allowed reports, inside a handler, whether the caller holds want in workspace ws.
func Allowed(ctx context.Context, ws string, want Scope) bool {
	p, ok := FromContext(ctx)
	return ok && p.Allows(ws, want)
}
