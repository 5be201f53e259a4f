package warehouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// WorkspacePlaceholder stands for a workspace's name in WorkspaceUsers' user name template.
const WorkspacePlaceholder = "{workspace}"

// WorkspaceUsers opens connections to a ClickHouse server as the user that runs one
// workspace's SQL — `sluice sql`, the SELECT of a copy or a populate, a rendered pipe — so that
// ClickHouse itself confines that SQL to the workspace's database, behind Sluice's own checks.
// The users exist on the server (users.xml with allow_databases, or SQL RBAC); their names
// come from a template holding {workspace}, and they share one password. A nil
// *WorkspaceUsers runs every workspace's SQL on the shared connection.
type WorkspaceUsers struct {
	base     NativeConfig
	template string
	password string

	mu     sync.Mutex
	conns  map[string]Conn
	closed bool
}

// NewWorkspaceUsers prepares connections like base's, as userTemplate with {workspace}
// replaced, with password.
func NewWorkspaceUsers(base NativeConfig, userTemplate, password string) (*WorkspaceUsers, error) {
	if !strings.Contains(userTemplate, WorkspacePlaceholder) {
		return nil, fmt.Errorf("warehouse: workspace user %q must hold %s", userTemplate, WorkspacePlaceholder)
	}
	base.Addrs = append([]string(nil), base.Addrs...)
	if base.MaxOpenConns <= 0 || base.MaxOpenConns > 4 {
		base.MaxOpenConns = 4
	}
	base.MaxIdleConns = base.MaxOpenConns
	return &WorkspaceUsers{base: base, template: userTemplate, password: password, conns: map[string]Conn{}}, nil
}

// User is the ClickHouse user of a workspace.
func (w *WorkspaceUsers) User(workspace string) string {
	return strings.ReplaceAll(w.template, WorkspacePlaceholder, workspace)
}

// For returns the connection that runs the workspace's SQL: as its user, with its database as
// the default one, opened once and kept; shared when w is nil.
func (w *WorkspaceUsers) For(ctx context.Context, workspace, database string, shared Conn) (Conn, error) {
	if w == nil {
		return shared, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errors.New("warehouse: workspace connections are closed")
	}
	if c, ok := w.conns[workspace]; ok {
		return c, nil
	}
	cfg := w.base
	cfg.Username, cfg.Password, cfg.Database = w.User(workspace), w.password, database
	c, err := OpenNative(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect as %s, the ClickHouse user of workspace %s: %w", cfg.Username, workspace, err)
	}
	w.conns[workspace] = c
	return c, nil
}

// Close closes every connection opened.
func (w *WorkspaceUsers) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	var errs []error
	for _, c := range w.conns {
		errs = append(errs, c.Close())
	}
	w.conns = nil
	return errors.Join(errs...)
}
