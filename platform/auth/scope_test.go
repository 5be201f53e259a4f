package auth

import (
	"strings"
	"testing"
)

func TestParseScope(t *testing.T) {
	ok := map[string]Scope{
		"ADMIN":                     {Type: Admin},
		"admin":                     {Type: Admin},
		"WORKSPACE:READ_ALL":        {Type: WorkspaceReadAll},
		"DATASOURCES:READ:events":   {Type: DataSourcesRead, Resource: "events"},
		"datasources:append:Events": {Type: DataSourcesAppend, Resource: "Events"},
		"PIPES:RUN:daily_copy__v2":  {Type: PipesRun, Resource: "daily_copy__v2"},
		" JOBS:READ ":               {Type: JobsRead},
		"METRICS:READ":              {Type: MetricsRead},
		"DATASOURCES:CREATE":        {Type: DataSourcesCreate},
	}
	for text, want := range ok {
		got, err := ParseScope(text)
		if err != nil || got != want {
			t.Errorf("ParseScope(%q) = %v, %v; want %v", text, got, err, want)
		}
	}
	bad := map[string]string{
		"":                               "empty",
		"ROOT":                           "unknown scope",
		"DATASOURCES:READ":               "needs the name of a Data Source",
		"PIPES:READ":                     "needs the name of a Pipe",
		"ADMIN:events":                   "takes no resource",
		"JOBS:READ:x":                    "takes no resource",
		"DATASOURCES:READ:events:x > 1":  "row filters",
		"DATASOURCES:READ:ev ents":       "not a Data Source or Pipe name",
		"DATASOURCES:READ:`system`.tbl":  "not a Data Source or Pipe name",
		"PIPES:RUN:../../etc":            "not a Data Source or Pipe name",
		"DATASOURCES:READ:1events":       "not a Data Source or Pipe name",
		"DATASOURCES:READ:" + longName(): "not a Data Source or Pipe name",
	}
	for text, want := range bad {
		_, err := ParseScope(text)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseScope(%q) error = %v, want it to say %q", text, err, want)
		}
	}
}

func longName() string { return strings.Repeat("a", 129) }

func TestAllows(t *testing.T) {
	reader := &Principal{Kind: KindScoped, Workspace: "shop", Scopes: []Scope{{Type: DataSourcesRead, Resource: "events"}}}
	all := &Principal{Kind: KindScoped, Workspace: "shop", Scopes: []Scope{{Type: WorkspaceReadAll}}}
	admin := &Principal{Kind: KindAdmin, Workspace: "shop", Scopes: []Scope{{Type: Admin}}}
	operator := &Principal{Kind: KindOperator}
	metrics := &Principal{Kind: KindScoped, Scopes: []Scope{{Type: MetricsRead}}}
	cases := []struct {
		p    *Principal
		ws   string
		want Scope
		ok   bool
	}{
		{reader, "shop", Scope{DataSourcesRead, "events"}, true},
		{reader, "shop", Scope{DataSourcesRead, "orders"}, false},
		{reader, "shop", Scope{DataSourcesAppend, "events"}, false},
		{reader, "other", Scope{DataSourcesRead, "events"}, false},
		{reader, "shop", Scope{Type: WorkspaceReadAll}, false},
		{all, "shop", Scope{DataSourcesRead, "orders"}, true},
		{all, "shop", Scope{PipesRead, "p"}, true},
		{all, "shop", Scope{Type: JobsRead}, true},
		{all, "shop", Scope{Type: OpsLogRead}, true},
		{all, "shop", Scope{PipesRun, "p"}, false},
		{all, "shop", Scope{Type: Tokens}, false},
		{all, "shop", Scope{Type: JobsCancel}, false},
		{admin, "shop", Scope{PipesRun, "p"}, true},
		{admin, "shop", Scope{Type: Tokens}, true},
		{admin, "other", Scope{PipesRun, "p"}, false},
		{admin, "", Scope{Type: MetricsRead}, false},
		{operator, "any", Scope{DataSourcesDrop, "x"}, true},
		{operator, "", Scope{Type: MetricsRead}, true},
		{metrics, "", Scope{Type: MetricsRead}, true},
		{metrics, "shop", Scope{Type: JobsRead}, false},
		// Acting for a token: its scopes decide, not the caller's.
		{&Principal{Kind: KindService, OnBehalfOf: reader}, "shop", Scope{PipesRun, "p"}, false},
		{&Principal{Kind: KindService, OnBehalfOf: reader}, "shop", Scope{DataSourcesRead, "events"}, true},
	}
	for i, c := range cases {
		if got := c.p.Allows(c.ws, c.want); got != c.ok {
			t.Errorf("case %d: %s Allows(%s, %s) = %v, want %v", i, c.p.Describe(), c.ws, c.want, got, c.ok)
		}
	}
}

func TestTokenTextAndNames(t *testing.T) {
	id, text, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := TokenID(text); !ok || got != id {
		t.Fatalf("TokenID(%q) = %q, %v; want %q", text, got, ok, id)
	}
	if HashToken(text) != hash || strings.Contains(hash, text) {
		t.Fatal("hash is not the SHA-256 of the text")
	}
	_, text2, hash2, _ := NewToken()
	if text2 == text || hash2 == hash {
		t.Fatal("two tokens are equal")
	}
	rotated, rhash, _ := NewSecretFor(id)
	if got, _ := TokenID(rotated); got != id || rhash == hash {
		t.Fatal("a rotated secret keeps the id and changes the hash")
	}
	for _, bad := range []string{"", "sluice_", "sluice_abc_def", "sluice_zzzzzzzzzzzzzzzz_" + strings.Repeat("a", 43), "Bearer " + text, text[:len(text)-10]} {
		if _, ok := TokenID(bad); ok {
			t.Errorf("TokenID(%q) accepted", bad)
		}
	}
	for _, good := range []string{"app", "my token", "read-only.v2", "scheduled_copy_t_0e8e4c56120e4473b5a56486e6b7d98c"} {
		if err := ValidateTokenName(good); err != nil {
			t.Errorf("ValidateTokenName(%q) = %v", good, err)
		}
	}
	for _, bad := range []string{"", " app", "app ", "a/b", "a:b", "tok\n", "ünï", strings.Repeat("x", 129)} {
		if err := ValidateTokenName(bad); err == nil {
			t.Errorf("ValidateTokenName(%q) accepted", bad)
		}
	}
	if Key("shop", "a b") == Key("shop", "a_b") || Key("", "x") == Key("shop", "x") || !strings.HasPrefix(Key("", "operator"), KeyPrefix("")) {
		t.Fatal("store keys collide")
	}
}

// FuzzParseScope: scopes come from users (token create, JWT claims, datafiles); whatever the
// text, parsing never panics, and a scope it accepts writes back to text that parses to the
// same scope, with a resource only where the type takes one, and a resource that is a plain
// name.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"ADMIN", "DATASOURCES:READ:events", "pipes:run:x", "WORKSPACE:READ_ALL", "DATASOURCES:READ:a:b", "METRICS:READ", ":", "PIPES:READ:", "JOBS:READ:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		s, err := ParseScope(text)
		if err != nil {
			return
		}
		again, err := ParseScope(s.String())
		if err != nil || again != s {
			t.Fatalf("%q parsed to %v, which writes %q and parses to %v, %v", text, s, s.String(), again, err)
		}
		if scopeTypes[s.Type].resource != (s.Resource != "") || (s.Resource != "" && !ValidResourceName(s.Resource)) {
			t.Fatalf("%q parsed to %+v", text, s)
		}
	})
}
