package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicehq/sluice/platform/auth"
	"github.com/sluicehq/sluice/services/catalog/datafile"
)

// The catalog owns the token store (auth.Bucket): it alone writes it. Every process verifies
// tokens from its own copy (auth.Verifier).
//
// Tokens come from four places: the operator token (made on first start, written to the
// operator token file), one admin token per workspace (made with the workspace), tokens made
// with TokenService.CreateToken, and tokens that datafile TOKEN lines name (made or updated by
// push, which keeps their datafile grants in step with the deployed files; a scheduled copy
// whose pipe names no token gets one of its own, as on the hosted platform).

type tokenStore struct {
	kv jetstream.KeyValue
}

func (t *tokenStore) get(ctx context.Context, ws, name string) (auth.Record, uint64, error) {
	var r auth.Record
	e, err := t.kv.Get(ctx, auth.Key(ws, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, 0, errNotFound
	}
	if err != nil {
		return r, 0, fmt.Errorf("token store: get %s: %w", name, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, 0, fmt.Errorf("token store: decode %s: %w", name, err)
	}
	return r, e.Revision(), nil
}

// list returns a workspace's tokens ("" for instance-level ones), by name.
func (t *tokenStore) list(ctx context.Context, ws string) ([]auth.Record, error) {
	lister, err := t.kv.ListKeysFiltered(ctx, auth.KeyPrefix(ws)+"*")
	if err != nil {
		return nil, fmt.Errorf("token store: list: %w", err)
	}
	var out []auth.Record
	for k := range lister.Keys() {
		e, err := t.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("token store: get %s: %w", k, err)
		}
		var r auth.Record
		if err := json.Unmarshal(e.Value(), &r); err == nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// create writes a new token; false when the name is taken.
func (t *tokenStore) create(ctx context.Context, r auth.Record) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, err
	}
	if _, err := t.kv.Create(ctx, auth.Key(r.Workspace, r.Name), b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return false, nil
		}
		return false, fmt.Errorf("token store: create %s: %w", r.Name, err)
	}
	return true, nil
}

// update writes r if the token is still at revision rev (compare and set).
func (t *tokenStore) update(ctx context.Context, r auth.Record, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := t.kv.Update(ctx, auth.Key(r.Workspace, r.Name), b, rev); err != nil {
		return fmt.Errorf("token store: token %q changed meanwhile, try again: %w", r.Name, err)
	}
	return nil
}

func (t *tokenStore) put(ctx context.Context, r auth.Record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if _, err := t.kv.Put(ctx, auth.Key(r.Workspace, r.Name), b); err != nil {
		return fmt.Errorf("token store: put %s: %w", r.Name, err)
	}
	return nil
}

// purge revokes a token: every process drops it when the watch delivers the purge.
func (t *tokenStore) purge(ctx context.Context, ws, name string) error {
	if err := t.kv.Purge(ctx, auth.Key(ws, name)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("token store: delete %s: %w", name, err)
	}
	return nil
}

// newRecord makes a token record and its secret.
func (s *Service) newRecord(ws, name string, kind auth.Kind, grants []auth.Grant, description string, managed bool) (auth.Record, string, error) {
	id, text, hash, err := auth.NewToken()
	if err != nil {
		return auth.Record{}, "", err
	}
	now := s.deps.Now().UTC()
	return auth.Record{ID: id, Name: name, Workspace: ws, Kind: kind, Grants: grants, Hash: hash,
		Description: description, Managed: managed, CreateTime: now, UpdateTime: now}, text, nil
}

// ensureOperatorToken makes the operator token on first start and writes it to the operator
// token file (mode 0600). A token already in the file, when the store has none, becomes the
// operator token (an installation that brings its own, from a Secret).
func (s *Service) ensureOperatorToken(ctx context.Context) error {
	path := s.deps.OperatorTokenFile
	rec, _, err := s.tokens.get(ctx, "", auth.OperatorTokenName)
	if err == nil {
		if path != "" {
			if b, rerr := os.ReadFile(path); rerr != nil || auth.HashToken(strings.TrimSpace(string(b))) != rec.Hash {
				s.log.Info("the operator token exists; this process's operator token file does not hold it (another catalog replica wrote it, or it was rotated)", "file", path)
			}
		}
		return nil
	}
	if !errors.Is(err, errNotFound) {
		return err
	}
	if path == "" {
		return errors.New("no operator token yet and no file to write it to: set -data-dir or -auth.operator-token-file")
	}
	var text string
	if b, rerr := os.ReadFile(path); rerr == nil {
		if t := strings.TrimSpace(string(b)); t != "" {
			if !auth.LooksLikeToken(t) {
				return fmt.Errorf("operator token file %s holds something that is not a Sluice token (sluice_<id>_<secret>); remove it to have one made", path)
			}
			text = t
		}
	}
	var r auth.Record
	brought := text != ""
	if brought {
		id, _ := auth.TokenID(text)
		now := s.deps.Now().UTC()
		r = auth.Record{ID: id, Name: auth.OperatorTokenName, Kind: auth.KindOperator, Hash: auth.HashToken(text), CreateTime: now, UpdateTime: now}
	} else if r, text, err = s.newRecord("", auth.OperatorTokenName, auth.KindOperator, nil, "", false); err != nil {
		return err
	}
	r.Description = "operator token: manages workspaces and instance tokens, acts on any workspace"
	created, err := s.tokens.create(ctx, r)
	if err != nil {
		return err
	}
	if !created {
		s.log.Info("the operator token was made by another catalog replica", "file", path)
		return nil
	}
	if !brought {
		if err := writeSecretFile(path, text); err != nil {
			// Nobody could ever use a token that was not written down: take it back.
			_ = s.tokens.purge(context.WithoutCancel(ctx), "", auth.OperatorTokenName)
			return fmt.Errorf("write the operator token: %w", err)
		}
	}
	s.log.Info("operator token created", "file", path, "from_file", brought)
	return nil
}

// writeSecretFile writes text to path with mode 0600, atomically (a rename).
func writeSecretFile(path, text string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(text + "\n"); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// makeAdminToken gives a workspace a new admin token, replacing one left behind by an earlier
// workspace of the same name; it returns the secret.
func (s *Service) makeAdminToken(ctx context.Context, ws string) (string, error) {
	r, text, err := s.newRecord(ws, auth.AdminTokenName, auth.KindAdmin, []auth.Grant{{Scope: string(auth.Admin)}}, "workspace admin token", false)
	if err != nil {
		return "", err
	}
	if err := s.tokens.put(ctx, r); err != nil {
		return "", err
	}
	return text, nil
}

// deleteWorkspaceTokens revokes every token of a workspace.
func (s *Service) deleteWorkspaceTokens(ctx context.Context, ws string) error {
	recs, err := s.tokens.list(ctx, ws)
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := s.tokens.purge(ctx, ws, r.Name); err != nil {
			return err
		}
	}
	return nil
}

// copyToken is the token a scheduled copy of pipe pd runs with: the pipe's first
// `TOKEN "name" READ` line, else (auto) the token push makes for it. Empty for pipes without
// a scheduled copy.
func copyToken(pd *pipeDef) (name string, auto bool) {
	scheduled := false
	for _, n := range pd.pipe.Nodes {
		if n.Type == datafile.NodeCopy && n.CopySchedule != "" && !strings.EqualFold(n.CopySchedule, datafile.OnDemand) {
			scheduled = true
		}
	}
	if !scheduled {
		return "", false
	}
	for _, t := range pd.pipe.Tokens {
		if t.Permission == "READ" && auth.ValidateTokenName(t.Name) == nil && !reservedTokenName(t.Name) {
			return t.Name, false
		}
	}
	return auth.ScheduledCopyTokenPrefix + pd.pipe.Name, true
}

// tokenPermission maps a TOKEN line's permission to the scope it grants on its resource; ok is
// false for permissions datafiles do not grant.
func tokenPermission(kind resourceKind, perm string) (auth.ScopeType, bool) {
	switch {
	case kind == kindDataSource && perm == "READ":
		return auth.DataSourcesRead, true
	case kind == kindDataSource && perm == "APPEND":
		return auth.DataSourcesAppend, true
	case kind == kindPipe && perm == "READ":
		return auth.PipesRead, true
	}
	return "", false
}

// tokenDiags checks TOKEN lines: names must be valid and not reserved; permissions datafiles
// do not grant are warned about.
func tokenDiags(kind resourceKind, tokens []datafile.Token) []diag {
	var diags []diag
	for _, t := range tokens {
		if err := auth.ValidateTokenName(t.Name); err != nil {
			diags = append(diags, diag{pos: t.Pos, msg: "TOKEN: " + err.Error()})
			continue
		}
		if t.Name == auth.AdminTokenName || t.Name == auth.OperatorTokenName {
			diags = append(diags, diag{pos: t.Pos, msg: fmt.Sprintf("TOKEN %q: the name is reserved for the workspace's %s token", t.Name, t.Name)})
			continue
		}
		if _, ok := tokenPermission(kind, t.Permission); !ok {
			what, allowed := "Data Source", "READ or APPEND"
			if kind == kindPipe {
				what, allowed = "Pipe", "READ"
			}
			diags = append(diags, diag{pos: t.Pos, warning: true, msg: fmt.Sprintf(
				"TOKEN %q %s is not granted: a %s's TOKEN line grants %s (create other scopes with `sluice token create %s --scope ...`)", t.Name, t.Permission, what, allowed, t.Name)})
		}
	}
	return diags
}

// datafileGrants are the scopes the project's files grant, by token name; auto lists the
// tokens made for scheduled copies (their secret is never shown: only the scheduler uses them).
func (p *project) datafileGrants() (grants map[string][]auth.Scope, auto map[string]bool) {
	grants, auto = map[string][]auth.Scope{}, map[string]bool{}
	add := func(name string, s auth.Scope) {
		if !slices.Contains(grants[name], s) {
			grants[name] = append(grants[name], s)
		}
	}
	for _, name := range sortedNames(p.datasources) {
		d := p.datasources[name]
		for _, t := range d.ds.Tokens {
			if typ, ok := tokenPermission(kindDataSource, t.Permission); ok && auth.ValidateTokenName(t.Name) == nil && !reservedTokenName(t.Name) {
				add(t.Name, auth.Scope{Type: typ, Resource: d.ds.Name})
			}
		}
	}
	for _, name := range sortedNames(p.pipes) {
		pd := p.pipes[name]
		for _, t := range pd.pipe.Tokens {
			if typ, ok := tokenPermission(kindPipe, t.Permission); ok && auth.ValidateTokenName(t.Name) == nil && !reservedTokenName(t.Name) {
				add(t.Name, auth.Scope{Type: typ, Resource: pd.pipe.Name})
			}
		}
		if ct, isAuto := copyToken(pd); isAuto {
			add(ct, auth.Scope{Type: auth.PipesRead, Resource: pd.pipe.Name})
			auto[ct] = true
		}
	}
	for _, scopes := range grants {
		sort.Slice(scopes, func(i, j int) bool { return scopes[i].String() < scopes[j].String() })
	}
	return grants, auto
}

func reservedTokenName(n string) bool { return n == auth.AdminTokenName || n == auth.OperatorTokenName }

// tokenChange is one token push creates, changes or deletes.
type tokenChange struct {
	name string
	// rec is the record to write; rev its revision (0: create).
	rec auth.Record
	rev uint64
	// secret of a created token, returned by push unless auto.
	secret string
	auto   bool
	delete bool
	// added are the scopes the change grants that the token did not have.
	added []auth.Scope
}

// planTokens compares the datafile grants of the project with the store.
func (s *Service) planTokens(ctx context.Context, ws string, p *project) ([]tokenChange, error) {
	want, auto := p.datafileGrants()
	have, err := s.tokens.list(ctx, ws)
	if err != nil {
		return nil, err
	}
	byName := map[string]auth.Record{}
	for _, r := range have {
		byName[r.Name] = r
	}
	var changes []tokenChange
	for _, r := range have {
		if _, ok := want[r.Name]; ok || r.Kind != auth.KindScoped {
			continue
		}
		var kept []auth.Grant
		dropped := false
		for _, g := range r.Grants {
			if g.Datafile {
				dropped = true
				continue
			}
			kept = append(kept, g)
		}
		if !dropped {
			continue
		}
		_, rev, err := s.tokens.get(ctx, ws, r.Name)
		if err != nil {
			return nil, err
		}
		if r.Managed && len(kept) == 0 {
			changes = append(changes, tokenChange{name: r.Name, rec: r, delete: true})
			continue
		}
		r.Grants = kept
		changes = append(changes, tokenChange{name: r.Name, rec: r, rev: rev})
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		scopes := want[name]
		r, exists := byName[name]
		if !exists {
			var grants []auth.Grant
			for _, sc := range scopes {
				grants = append(grants, auth.Grant{Scope: sc.String(), Datafile: true})
			}
			desc := "made by push from TOKEN lines"
			if auto[name] {
				desc = "made by push for the scheduled copy of pipe " + strings.TrimPrefix(name, auth.ScheduledCopyTokenPrefix)
			}
			rec, secret, err := s.newRecord(ws, name, auth.KindScoped, grants, desc, true)
			if err != nil {
				return nil, err
			}
			changes = append(changes, tokenChange{name: name, rec: rec, secret: secret, auto: auto[name], added: scopes})
			continue
		}
		if r.Kind != auth.KindScoped {
			continue // reserved names are refused by the analysis
		}
		var cur []auth.Scope
		var kept []auth.Grant
		for _, g := range r.Grants {
			if g.Datafile {
				if sc, err := auth.ParseScope(g.Scope); err == nil {
					cur = append(cur, sc)
				}
				continue
			}
			kept = append(kept, g)
		}
		var added []auth.Scope
		for _, sc := range scopes {
			if !slices.Contains(cur, sc) {
				added = append(added, sc)
			}
		}
		if len(added) == 0 && len(cur) == len(scopes) {
			continue
		}
		for _, sc := range scopes {
			kept = append(kept, auth.Grant{Scope: sc.String(), Datafile: true})
		}
		_, rev, err := s.tokens.get(ctx, ws, name)
		if err != nil {
			return nil, err
		}
		r.Grants = kept
		r.UpdateTime = s.deps.Now().UTC()
		changes = append(changes, tokenChange{name: name, rec: r, rev: rev, added: added, auto: auto[name]})
	}
	return changes, nil
}

// authorizeTokenChanges checks that the caller may grant what the changes add: TOKENS and every
// added scope, except for the tokens made for scheduled copies, whose secret nobody receives.
func authorizeTokenChanges(ctx context.Context, ws string, changes []tokenChange) error {
	var need []auth.Scope
	for _, c := range changes {
		if c.auto || len(c.added) == 0 {
			continue
		}
		need = append(need, c.added...)
	}
	if len(need) == 0 {
		return nil
	}
	return auth.Require(ctx, ws, append([]auth.Scope{{Type: auth.Tokens}}, need...)...)
}

// applyTokens writes the changes and returns the tokens created with their secrets (not the
// scheduled copies' ones).
func (s *Service) applyTokens(ctx context.Context, changes []tokenChange) ([]auth.Record, []string, error) {
	var made []auth.Record
	var secrets []string
	for _, c := range changes {
		switch {
		case c.delete:
			if err := s.tokens.purge(ctx, c.rec.Workspace, c.name); err != nil {
				return made, secrets, err
			}
		case c.rev == 0:
			created, err := s.tokens.create(ctx, c.rec)
			if err != nil {
				return made, secrets, err
			}
			if !created {
				return made, secrets, fmt.Errorf("token %q was created meanwhile; push again", c.name)
			}
			if !c.auto {
				made = append(made, c.rec)
				secrets = append(secrets, c.secret)
			}
		default:
			if err := s.tokens.update(ctx, c.rec, c.rev); err != nil {
				return made, secrets, err
			}
		}
	}
	return made, secrets, nil
}
