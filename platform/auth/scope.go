// Package auth decides who may call what. Every gRPC call and HTTP endpoint carries a bearer
// token; Authenticate turns it into a Principal (the built-in tokens from the token store, the
// service credential, or a JWT verified with a configured key), and the one table in rules.go
// says what each RPC and endpoint requires. The interceptors apply it; handlers that must look
// inside a request (a push's files, a query's tables) call Require.
//
// The names of the scopes follow the hosted platform's where they mean the same thing
// (DATASOURCES:READ:<name>, PIPES:READ:<name>, ADMIN, TOKENS, WORKSPACE:READ_ALL, ...).
package auth

import (
	"fmt"
	"slices"
	"strings"
)

// ScopeType is the part of a scope before its resource: DATASOURCES:READ in
// DATASOURCES:READ:events.
type ScopeType string

// Workspace scopes. Those marked "of a resource" are always granted on one named Data Source or
// Pipe (DATASOURCES:READ:events); the others stand alone.
const (
	// Admin grants everything in the workspace, including its tokens.
	Admin ScopeType = "ADMIN"
	// Tokens manages the workspace's tokens; a token may grant only the scopes it holds.
	Tokens ScopeType = "TOKENS"
	// WorkspaceReadAll reads every Data Source, Pipe, job, schedule and ops-log event of the
	// workspace, and lists them.
	WorkspaceReadAll ScopeType = "WORKSPACE:READ_ALL"
	// DataSourcesCreate pushes .datasource files (creates and alters Data Sources).
	DataSourcesCreate ScopeType = "DATASOURCES:CREATE"
	// DataSourcesRead reads one Data Source (describe it, query it with `sluice sql`).
	DataSourcesRead ScopeType = "DATASOURCES:READ"
	// DataSourcesAppend appends rows to one Data Source.
	DataSourcesAppend ScopeType = "DATASOURCES:APPEND"
	// DataSourcesDrop deletes one Data Source.
	DataSourcesDrop ScopeType = "DATASOURCES:DROP"
	// PipesCreate pushes .pipe files (creates and changes Pipes).
	PipesCreate ScopeType = "PIPES:CREATE"
	// PipesRead reads one Pipe (its nodes, its rendered SQL, its result through `sluice sql`).
	PipesRead ScopeType = "PIPES:READ"
	// PipesDrop deletes one Pipe.
	PipesDrop ScopeType = "PIPES:DROP"
	// PipesRun runs one Pipe's copies and populates, and pauses and resumes its schedule.
	PipesRun ScopeType = "PIPES:RUN"
	// JobsRead reads the workspace's jobs.
	JobsRead ScopeType = "JOBS:READ"
	// JobsCancel cancels the workspace's jobs.
	JobsCancel ScopeType = "JOBS:CANCEL"
	// OpsLogRead reads the workspace's datasources_ops_log events.
	OpsLogRead ScopeType = "OPSLOG:READ"
)

// Instance scopes, held by tokens that belong to no workspace.
const (
	// MetricsRead reads /metrics.
	MetricsRead ScopeType = "METRICS:READ"
)

type scopeInfo struct {
	// resource: granted on one named resource (DATASOURCES:READ:<name>).
	resource bool
	// instance: held by instance-level tokens only.
	instance bool
	// read: implied by WORKSPACE:READ_ALL.
	read bool
}

var scopeTypes = map[ScopeType]scopeInfo{
	Admin:             {},
	Tokens:            {},
	WorkspaceReadAll:  {read: true},
	DataSourcesCreate: {},
	DataSourcesRead:   {resource: true, read: true},
	DataSourcesAppend: {resource: true},
	DataSourcesDrop:   {resource: true},
	PipesCreate:       {},
	PipesRead:         {resource: true, read: true},
	PipesDrop:         {resource: true},
	PipesRun:          {resource: true},
	JobsRead:          {read: true},
	JobsCancel:        {},
	OpsLogRead:        {read: true},
	MetricsRead:       {instance: true},
}

// ScopeTypes lists every scope type, workspace scopes first, in a stable order (for help
// texts and errors).
func ScopeTypes() []ScopeType {
	out := make([]ScopeType, 0, len(scopeTypes))
	for t := range scopeTypes {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b ScopeType) int {
		ia, ib := scopeTypes[a].instance, scopeTypes[b].instance
		if ia != ib {
			if ia {
				return 1
			}
			return -1
		}
		return strings.Compare(string(a), string(b))
	})
	return out
}

// Scope is a scope type, with the resource it is granted on for resource scopes.
type Scope struct {
	Type     ScopeType
	Resource string
}

// String is the scope as users write it: TYPE or TYPE:resource.
func (s Scope) String() string {
	if s.Resource == "" {
		return string(s.Type)
	}
	return string(s.Type) + ":" + s.Resource
}

// Instance reports whether the scope is held by instance-level tokens.
func (s Scope) Instance() bool { return scopeTypes[s.Type].instance }

// ParseScope reads a scope as users write it. Scope types are case-insensitive; resource names
// are kept as written.
func ParseScope(text string) (Scope, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return Scope{}, fmt.Errorf("empty scope")
	}
	upper := strings.ToUpper(text)
	// The longest known type that the text starts with: WORKSPACE:READ_ALL and
	// DATASOURCES:READ:<name> both contain a colon.
	var typ ScopeType
	for t := range scopeTypes {
		if (upper == string(t) || strings.HasPrefix(upper, string(t)+":")) && len(t) > len(typ) {
			typ = t
		}
	}
	if typ == "" {
		return Scope{}, fmt.Errorf("unknown scope %q (known: %s)", text, knownScopes())
	}
	info := scopeTypes[typ]
	rest := text[len(typ):]
	resource := strings.TrimPrefix(rest, ":")
	switch {
	case info.resource && resource == "":
		return Scope{}, fmt.Errorf("scope %s needs the name of a %s: %s:<name> (or WORKSPACE:READ_ALL to read everything)", typ, resourceWord(typ), typ)
	case !info.resource && rest != "":
		return Scope{}, fmt.Errorf("scope %s takes no resource name (got %q)", typ, text)
	case strings.Contains(resource, ":"):
		return Scope{}, fmt.Errorf("scope %q: row filters (%s:<name>:<sql_filter>) are not supported", text, typ)
	case info.resource && !ValidResourceName(resource):
		return Scope{}, fmt.Errorf("scope %q: %q is not a Data Source or Pipe name (letters, digits and underscores)", text, resource)
	}
	return Scope{Type: typ, Resource: resource}, nil
}

// ParseScopes reads a list of scopes; the error names the first bad one.
func ParseScopes(texts []string) ([]Scope, error) {
	out := make([]Scope, 0, len(texts))
	for _, t := range texts {
		s, err := ParseScope(t)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// FormatScopes writes scopes as users write them.
func FormatScopes(scopes []Scope) []string {
	out := make([]string, len(scopes))
	for i, s := range scopes {
		out[i] = s.String()
	}
	return out
}

func resourceWord(t ScopeType) string {
	if strings.HasPrefix(string(t), "PIPES:") {
		return "Pipe"
	}
	return "Data Source"
}

func knownScopes() string {
	var parts []string
	for _, t := range ScopeTypes() {
		if scopeTypes[t].resource {
			parts = append(parts, string(t)+":<name>")
		} else {
			parts = append(parts, string(t))
		}
	}
	return strings.Join(parts, ", ")
}

// ValidResourceName matches the names Sluice gives Data Sources and Pipes (letters, digits
// and underscores, not starting with a digit, at most 128 bytes): a scope can name only those.
func ValidResourceName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// grants reports whether holding `held` allows `want` (both in the same workspace): ADMIN
// allows everything, WORKSPACE:READ_ALL every read scope, anything else only itself.
func grants(held, want Scope) bool {
	switch {
	case held == want:
		return true
	case held.Type == Admin:
		return !want.Instance()
	case held.Type == WorkspaceReadAll:
		return scopeTypes[want.Type].read
	}
	return false
}
