package catalog

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/platform/opsevents/opslogdb"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// createWorkspace returns the workspace, creating it, its database and its admin token when
// missing (adminToken is then the token's secret, shown once). Creating is idempotent: the
// database is created with IF NOT EXISTS before the record is written, and only the call whose
// record write wins makes the admin token.
func (s *Service) createWorkspace(ctx context.Context, name string) (w workspaceRecord, adminToken string, created bool, err error) {
	if !validWorkspaceName(name) {
		return workspaceRecord{}, "", false, invalidArg("name", "%q must be lower-case letters, digits and underscores, starting with a letter (at most 64)", name)
	}
	w, err = s.store.workspace(ctx, name)
	if err == nil {
		// Idempotent, and cheap: keeps workspaces made before the view existed up to date.
		return w, "", false, s.ensureOpsLogView(ctx, w)
	}
	if !isNotFound(err) {
		return w, "", false, err
	}
	w = workspaceRecord{Name: name, Database: s.cfg.DatabasePrefix + name, CreateTime: s.deps.Now().UTC()}
	if _, err := s.deps.Warehouse.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+warehouse.QuoteIdent(w.Database)); err != nil {
		return w, "", false, fmt.Errorf("create database for workspace %s: %w", name, err)
	}
	created, err = s.store.createJSON(ctx, wsKey(name), w)
	if err != nil {
		return w, "", false, err
	}
	if !created {
		// Another replica created it meanwhile: use its record.
		w, err = s.store.workspace(ctx, name)
		return w, "", false, err
	}
	if adminToken, err = s.makeAdminToken(ctx, name); err != nil {
		return w, "", true, fmt.Errorf("workspace %s created, but not its admin token (the operator can make one with `sluice token rotate admin --workspace %s`): %w", name, name, err)
	}
	if err := s.ensureOpsLogView(ctx, w); err != nil {
		return w, adminToken, true, err
	}
	s.log.Info("workspace created", "workspace", name, "database", w.Database)
	return w, adminToken, true, nil
}

// workspace returns an existing workspace or a NotFound error.
func (s *Service) workspace(ctx context.Context, name string) (workspaceRecord, error) {
	if name == "" {
		return workspaceRecord{}, invalidArg("workspace", "required")
	}
	w, err := s.store.workspace(ctx, name)
	if isNotFound(err) {
		return w, notFound("workspace %q does not exist: create it first (`sluice workspace create %s`, with the operator token)", name, name)
	}
	return w, err
}

// lockWorkspace returns an existing workspace with its lock held (see lock), and the context
// that ends when the lock is lost; the caller defers unlock.
func (s *Service) lockWorkspace(ctx context.Context, name string) (context.Context, workspaceRecord, func(), error) {
	ws, err := s.workspace(ctx, name)
	if err != nil {
		return nil, ws, nil, err
	}
	ctx, unlock, err := s.lock(ctx, ws.Name)
	return ctx, ws, unlock, err
}

func (s *Service) deleteWorkspace(ctx context.Context, name string) error {
	ctx, w, unlock, err := s.lockWorkspace(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.deps.Warehouse.Exec(ctx, "DROP DATABASE IF EXISTS "+warehouse.QuoteIdent(w.Database)); err != nil {
		return fmt.Errorf("drop database of workspace %s: %w", name, err)
	}
	keys, err := s.store.keys(ctx, "res."+name+".>")
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.store.delete(ctx, k); err != nil {
			return err
		}
	}
	// Tokens go before the record: a failure leaves a workspace that can be deleted again,
	// never tokens of a workspace that is gone.
	if err := s.deleteWorkspaceTokens(ctx, name); err != nil {
		return err
	}
	// File versions are kept: they are the history of what was pushed.
	return s.store.delete(ctx, wsKey(name))
}

func validWorkspaceName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ensureOpsLogView gives the workspace its `datasources_ops_log`: a view of the ops-log table
// restricted to the workspace's own events.
func (s *Service) ensureOpsLogView(ctx context.Context, w workspaceRecord) error {
	if s.deps.OpsDatabase == "" {
		return nil
	}
	if err := opslogdb.EnsureWorkspaceView(ctx, s.deps.Warehouse, s.deps.OpsDatabase, w.Database, w.Name); err != nil {
		return fmt.Errorf("datasources_ops_log view of workspace %s: %w", w.Name, err)
	}
	return nil
}
