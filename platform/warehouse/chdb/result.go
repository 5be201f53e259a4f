// Package chdb binds the C API of chDB (ClickHouse as a library, 3.x+ API)
// by loading libchdb.so at run time with dlopen. Nothing links against the
// library at build time, so a binary that imports this package builds and
// runs on machines without it until Load is called.
//
// The API is deliberately thin: one process-wide library, connections that
// run one statement and return its raw output buffer. Serialising statements,
// settings and result parsing belong to the caller (package warehouse).
package chdb

import (
	"errors"
	"time"
)

// ErrNotFound is wrapped by Load when the library file does not exist.
var ErrNotFound = errors.New("libchdb.so not found")

// Result is the output and statistics of one statement. RowsRead and
// BytesRead count the result's rows; StorageRowsRead and StorageBytesRead
// what the statement read from tables and table functions.
type Result struct {
	Data             []byte
	RowsRead         uint64
	BytesRead        uint64
	StorageRowsRead  uint64
	StorageBytesRead uint64
	RowsWritten      uint64
	BytesWritten     uint64
	Elapsed          time.Duration
}

// QueryError is an error reported by chDB for a statement, with its message
// verbatim (for example "Code: 60. DB::Exception: ... (UNKNOWN_TABLE)").
type QueryError struct{ Message string }

func (e *QueryError) Error() string { return e.Message }
