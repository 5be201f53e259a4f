package catalog

import (
	"context"
	"errors"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/platform/paging"
)

// tokenService implements TokenService on the catalog's token store. The interceptor has
// checked the TOKENS scope and filled in the caller's workspace; the handlers check what only
// the request tells: a caller grants, rotates or deletes only what it could create.
type tokenService struct {
	catalogv1.UnimplementedTokenServiceServer
	s *Service
}

// TokenServiceName is the gRPC name of the token service, which the catalog serves.
var TokenServiceName = catalogv1.TokenService_ServiceDesc.ServiceName

func (t *tokenService) ListTokens(ctx context.Context, req *catalogv1.ListTokensRequest) (*catalogv1.ListTokensResponse, error) {
	ws := req.GetWorkspace()
	if err := t.s.tokenWorkspace(ctx, ws); err != nil {
		return nil, grpcError(err)
	}
	recs, err := t.s.tokens.list(ctx, ws)
	if err != nil {
		return nil, grpcError(err)
	}
	page, next, err := paging.ByName(req, req.GetPageSize(), req.GetPageToken(), maxPage, recs, func(r auth.Record) string { return r.Name })
	if err != nil {
		return nil, err
	}
	resp := &catalogv1.ListTokensResponse{NextPageToken: next}
	for _, r := range page {
		resp.Tokens = append(resp.Tokens, tokenProto(r))
	}
	return resp, nil
}

func (t *tokenService) CreateToken(ctx context.Context, req *catalogv1.CreateTokenRequest) (*catalogv1.CreateTokenResponse, error) {
	ws, name := req.GetWorkspace(), req.GetName()
	if err := auth.ValidateTokenName(name); err != nil {
		return nil, grpcError(invalidArg("name", "%v", err))
	}
	if reservedTokenName(name) {
		return nil, grpcError(invalidArg("name", "%q is reserved for the workspace's %s token", name, name))
	}
	if err := t.s.tokenWorkspace(ctx, ws); err != nil {
		return nil, grpcError(err)
	}
	if len(req.GetScopes()) == 0 {
		return nil, grpcError(invalidArg("scopes", "at least one scope is required (for example DATASOURCES:READ:events, PIPES:RUN:daily_copy, JOBS:READ)"))
	}
	scopes, err := auth.ParseScopes(req.GetScopes())
	if err != nil {
		return nil, grpcError(invalidArg("scopes", "%v", err))
	}
	for _, sc := range scopes {
		if sc.Instance() != (ws == "") {
			if ws == "" {
				return nil, grpcError(invalidArg("scopes", "%s is a workspace scope: name the workspace (--workspace)", sc))
			}
			return nil, grpcError(invalidArg("scopes", "%s is an instance scope: create the token with the operator token and no workspace", sc))
		}
	}
	if err := auth.Require(ctx, ws, scopes...); err != nil {
		return nil, err
	}
	var grants []auth.Grant
	for _, sc := range scopes {
		grants = append(grants, auth.Grant{Scope: sc.String()})
	}
	rec, secret, err := t.s.newRecord(ws, name, auth.KindScoped, grants, req.GetDescription(), false)
	if err != nil {
		return nil, grpcError(err)
	}
	created, err := t.s.tokens.create(ctx, rec)
	if err != nil {
		return nil, grpcError(err)
	}
	if !created {
		return nil, apierr.AlreadyExists("token", name, "token %q exists%s: rotate it (sluice token rotate) or delete it first", name, inWorkspace(ws))
	}
	t.s.log.Info("token created", "workspace", ws, "token", name, "scopes", auth.FormatScopes(scopes))
	return &catalogv1.CreateTokenResponse{Issued: &catalogv1.IssuedToken{Token: tokenProto(rec), Secret: secret}}, nil
}

func (t *tokenService) DeleteToken(ctx context.Context, req *catalogv1.DeleteTokenRequest) (*catalogv1.DeleteTokenResponse, error) {
	ws, name := req.GetWorkspace(), req.GetName()
	if err := checkTokenRef(ws, name); err != nil {
		return nil, grpcError(err)
	}
	rec, _, err := t.s.tokens.get(ctx, ws, name)
	if errors.Is(err, errNotFound) {
		return nil, apierr.NotFound("token", name, "no token %q%s", name, inWorkspace(ws))
	}
	if err != nil {
		return nil, grpcError(err)
	}
	switch rec.Kind {
	case auth.KindAdmin, auth.KindOperator:
		return nil, apierr.Precondition(commonv1.ErrorReason_ERROR_REASON_FAILED_PRECONDITION, "the %s token cannot be deleted: rotate it (sluice token rotate %s) to revoke its secret", rec.Name, rec.Name)
	}
	if err := auth.Require(ctx, ws, rec.Scopes()...); err != nil {
		return nil, err
	}
	if err := t.s.tokens.purge(ctx, ws, name); err != nil {
		return nil, grpcError(err)
	}
	t.s.log.Info("token deleted", "workspace", ws, "token", name)
	return &catalogv1.DeleteTokenResponse{}, nil
}

func (t *tokenService) RotateToken(ctx context.Context, req *catalogv1.RotateTokenRequest) (*catalogv1.RotateTokenResponse, error) {
	ws, name := req.GetWorkspace(), req.GetName()
	if err := checkTokenRef(ws, name); err != nil {
		return nil, grpcError(err)
	}
	rec, rev, err := t.s.tokens.get(ctx, ws, name)
	if errors.Is(err, errNotFound) && ws != "" && name == auth.AdminTokenName {
		// A workspace made before tokens existed (or whose admin token was lost) gets one.
		if err := auth.Require(ctx, ws, auth.Scope{Type: auth.Admin}); err != nil {
			return nil, err
		}
		if _, err := t.s.workspace(ctx, ws); err != nil {
			return nil, grpcError(err)
		}
		secret, err := t.s.makeAdminToken(ctx, ws)
		if err != nil {
			return nil, grpcError(err)
		}
		rec, _, err := t.s.tokens.get(ctx, ws, name)
		if err != nil {
			return nil, grpcError(err)
		}
		return &catalogv1.RotateTokenResponse{Issued: &catalogv1.IssuedToken{Token: tokenProto(rec), Secret: secret}}, nil
	}
	if errors.Is(err, errNotFound) {
		return nil, apierr.NotFound("token", name, "no token %q%s", name, inWorkspace(ws))
	}
	if err != nil {
		return nil, grpcError(err)
	}
	if p, _ := auth.FromContext(ctx); rec.Kind == auth.KindOperator && (p == nil || !p.Unrestricted()) {
		return nil, status.Error(codes.PermissionDenied, "only the operator token rotates the operator token")
	}
	if err := auth.Require(ctx, ws, rec.Scopes()...); err != nil {
		return nil, err
	}
	old := rec.Hash
	secret, hash, err := auth.NewSecretFor(rec.ID)
	if err != nil {
		return nil, grpcError(err)
	}
	rec.Hash, rec.UpdateTime = hash, t.s.deps.Now().UTC()
	if err := t.s.tokens.update(ctx, rec, rev); err != nil {
		return nil, status.Error(codes.Aborted, err.Error())
	}
	if rec.Kind == auth.KindOperator {
		t.s.rewriteOperatorFile(old, secret)
	}
	t.s.log.Info("token rotated", "workspace", ws, "token", name)
	return &catalogv1.RotateTokenResponse{Issued: &catalogv1.IssuedToken{Token: tokenProto(rec), Secret: secret}}, nil
}

// rewriteOperatorFile keeps this process's operator token file current when it held the token
// that was just rotated (so that `-dev` and the data directory's token keep working).
func (s *Service) rewriteOperatorFile(oldHash, secret string) {
	path := s.deps.OperatorTokenFile
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil || auth.HashToken(strings.TrimSpace(string(b))) != oldHash {
		return
	}
	if err := writeSecretFile(path, secret); err != nil {
		s.log.Warn("operator token rotated, but its file could not be rewritten", "file", path, "err", err)
	}
}

func (t *tokenService) GetCurrentToken(ctx context.Context, _ *catalogv1.GetCurrentTokenRequest) (*catalogv1.GetCurrentTokenResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no token")
	}
	if p.OnBehalfOf != nil {
		p = p.OnBehalfOf
	}
	// From the verified principal alone: no store read.
	tok := &catalogv1.Token{Id: p.TokenID, Name: p.Name, Workspace: p.Workspace, Kind: kindProto(p.Kind), Scopes: auth.FormatScopes(p.Scopes)}
	return &catalogv1.GetCurrentTokenResponse{Token: tok}, nil
}

// tokenWorkspace checks that a workspace named in a token call exists ("" is the instance).
func (s *Service) tokenWorkspace(ctx context.Context, ws string) error {
	if ws == "" {
		return nil
	}
	if !validWorkspaceName(ws) {
		return invalidArg("workspace", "%q is not a workspace name", ws)
	}
	_, err := s.workspace(ctx, ws)
	return err
}

// checkTokenRef checks the workspace and token names of a request before they make a store key.
func checkTokenRef(ws, name string) error {
	if ws != "" && !validWorkspaceName(ws) {
		return invalidArg("workspace", "%q is not a workspace name", ws)
	}
	if err := auth.ValidateTokenName(name); err != nil {
		return invalidArg("name", "%v", err)
	}
	return nil
}

func inWorkspace(ws string) string {
	if ws == "" {
		return " at the instance level"
	}
	return " in workspace " + ws
}

func kindProto(k auth.Kind) catalogv1.TokenKind {
	switch k {
	case auth.KindOperator:
		return catalogv1.TokenKind_TOKEN_KIND_OPERATOR
	case auth.KindAdmin:
		return catalogv1.TokenKind_TOKEN_KIND_ADMIN
	case auth.KindScoped:
		return catalogv1.TokenKind_TOKEN_KIND_SCOPED
	case auth.KindService:
		return catalogv1.TokenKind_TOKEN_KIND_SERVICE
	case auth.KindJWT:
		return catalogv1.TokenKind_TOKEN_KIND_JWT
	}
	return catalogv1.TokenKind_TOKEN_KIND_UNSPECIFIED
}

func tokenProto(r auth.Record) *catalogv1.Token {
	t := &catalogv1.Token{
		Id: r.ID, Name: r.Name, Workspace: r.Workspace, Kind: kindProto(r.Kind), Description: r.Description, Managed: r.Managed,
		CreateTime: timestamppb.New(r.CreateTime), UpdateTime: timestamppb.New(r.UpdateTime),
	}
	for _, g := range r.Grants {
		t.Scopes = append(t.Scopes, g.Scope)
		if g.Datafile {
			t.DatafileScopes = append(t.DatafileScopes, g.Scope)
		}
	}
	return t
}
