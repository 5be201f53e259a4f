//go:build !cgo

package chdb

import "errors"

// errNoCgo: without cgo there is no dlopen; the embedded engine needs a
// binary built with CGO_ENABLED=1. Everything else builds and runs.
var errNoCgo = errors.New("chdb: this binary was built without cgo (CGO_ENABLED=0); the embedded engine needs cgo")

// Load fails: see errNoCgo.
func Load(path string) error { return errNoCgo }

// Version is empty: no library can be loaded.
func Version() string { return "" }

// Conn is never returned without cgo.
type Conn struct{}

// Connect fails: see errNoCgo.
func Connect(args []string) (*Conn, error) { return nil, errNoCgo }

// Query fails: see errNoCgo.
func (c *Conn) Query(query, format string) (Result, error) { return Result{}, errNoCgo }

// Close does nothing.
func (c *Conn) Close() {}
