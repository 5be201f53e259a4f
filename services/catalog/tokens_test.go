package catalog

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// TestTokenLinesAreChecked checks the TOKEN lines a push refuses (a reserved or malformed name,
// with file, line and column, and nothing created) and the permission it warns about and does
// not grant (CREATE: datafiles grant READ and APPEND only).
func TestTokenLinesAreChecked(t *testing.T) {
	s, _ := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	const body = "\nSCHEMA >\n    x Int64\n"
	for line, want := range map[string]string{
		`TOKEN "admin" READ`:    `events.datasource:1:1: TOKEN "admin": the name is reserved`,
		`TOKEN "operator" READ`: `events.datasource:1:1: TOKEN "operator": the name is reserved`,
		`TOKEN "a/b" READ`:      `events.datasource:1:1: TOKEN: token name "a/b"`,
	} {
		_, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files("events.datasource", line+body)})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want InvalidArgument saying %q", line, err, want)
		}
	}
	if recs, err := s.tokens.list(ctx, "w"); err != nil || len(recs) != 1 || recs[0].Name != "admin" {
		t.Fatalf("refused pushes left tokens: %v %v", recs, err)
	}
	resp, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "w", Files: files("events.datasource", "TOKEN app APPEND\nTOKEN app CREATE\n"+body)})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetWarnings()) != 1 || !strings.Contains(resp.GetWarnings()[0].GetMessage(), `TOKEN "app" CREATE is not granted`) {
		t.Fatalf("warnings: %v", resp.GetWarnings())
	}
	if len(resp.GetNewTokens()) != 1 || resp.GetNewTokens()[0].GetToken().GetName() != "app" ||
		strings.Join(resp.GetNewTokens()[0].GetToken().GetScopes(), ",") != "DATASOURCES:APPEND:events" {
		t.Fatalf("new tokens: %v", resp.GetNewTokens())
	}
}

// TestTokenCallsCheckNames: names reach the token store's keys only once checked, also from the
// operator (who may name any workspace): a wildcard or a dot could otherwise address other keys.
func TestTokenCallsCheckNames(t *testing.T) {
	s, _ := newTestService(t)
	ctx := operatorCtx(t, s, "w")
	ts := &tokenService{s: s}
	for _, ws := range []string{"w.>", "*", "w.*", "W", "1w"} {
		if _, err := ts.ListTokens(ctx, &catalogv1.ListTokensRequest{Workspace: ws}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListTokens(%q): %v", ws, err)
		}
		if _, err := ts.DeleteToken(ctx, &catalogv1.DeleteTokenRequest{Workspace: ws, Name: "admin"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("DeleteToken(%q): %v", ws, err)
		}
		if _, err := ts.RotateToken(ctx, &catalogv1.RotateTokenRequest{Workspace: ws, Name: "admin"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RotateToken(%q): %v", ws, err)
		}
	}
	for _, name := range []string{"a>b", "a.*", "", "x\x00"} {
		if _, err := ts.CreateToken(ctx, &catalogv1.CreateTokenRequest{Workspace: "w", Name: name, Scopes: []string{"JOBS:READ"}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateToken(%q): %v", name, err)
		}
		if _, err := ts.RotateToken(ctx, &catalogv1.RotateTokenRequest{Workspace: "w", Name: name}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("RotateToken(%q): %v", name, err)
		}
	}
	if recs, err := s.tokens.list(ctx, "w"); err != nil || len(recs) != 1 {
		t.Fatalf("tokens of w after the refused calls: %v %v", recs, err)
	}
}
