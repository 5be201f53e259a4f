// Package warehouse is Sluice's one way to talk to ClickHouse. Two engines
// implement Conn: chDB embedded in the process (EngineEmbedded, for one
// machine and for tests) and a ClickHouse server over the native protocol
// (EngineNative, clickhouse-go/v2). Both behave the same for everything
// Sluice does; the conformance suite in package warehousetest proves it on
// chDB 26.7 and on clickhouse-server 18.16.
//
// Every call has a query id (generated unless WithQueryID), per-call
// settings (WithSettings), a run-time bound taken from the context deadline
// (max_execution_time, remaining seconds rounded up, unless the caller set
// it), statistics for the ops log, and errors classified by Class so callers
// can retry, shrink or give up; the server's code, name and message are kept
// in *Error.
//
// # Where the engines differ
//
// Cancellation. A native call whose context ends is abandoned by the driver
// and then killed on the server (KILL QUERY ... SYNC on another connection),
// so when the call returns the server no longer runs it. chDB cannot
// interrupt a running statement: the context is honoured before the
// statement starts (also while waiting for the session), and the deadline
// bounds the statement through max_execution_time. Embedded mode is for one
// machine; point heavy workloads at a ClickHouse server.
//
// Concurrency. chDB has one session per process and runs one statement at a
// time; Conn serialises calls in Go. Every chDB call costs a millisecond or
// two, so per-call settings go into the statement's own SETTINGS clause where
// it takes one (a SELECT or INSERT ... SELECT without SETTINGS, FORMAT or
// VALUES of its own); otherwise they are SET on the session for the call and
// reset after it, except readonly, which cannot be reset and always goes in
// the clause. Statements that run no query pipeline (CREATE ... AS, DROP,
// ALTER ... PARTITION, TRUNCATE, ...) do not get the max_execution_time
// derived from the context's deadline, which would not bound them. The native engine
// sends settings with each query. ClickHouse 18.16 ignores
// max_execution_time sent that way, so the native engine also enforces it
// client side (kill after the limit plus a second, reported as code 159).
// Old servers (protocol before 54429, e.g. 18.16) accept only integer and
// boolean settings over the native protocol.
//
// One statement per call. chDB would run every statement of "a; b"; the
// embedded engine refuses that with SYNTAX_ERROR (code 62) as a server does.
//
// Query ids. The native engine sends them (system.processes, query_log,
// KILL QUERY). chDB has no per-statement query id: it is only recorded in
// Stats and errors.
//
// Statistics. chDB reports rows and bytes read (from storage) and written,
// and the statement's elapsed time. The native engine sums the server's
// progress packets: read rows and bytes always (servers count whole blocks,
// so a read of 100000 rows of numbers() may report 131072); written rows
// and bytes only from protocol 54420 (not 18.16; InsertRows then reports
// the rows it sent); MemoryUsage from profile events (servers 21.x and
// newer); Elapsed is the client's wall time. chDB never reports memory.
//
// Values. Query returns the Go types documented on Result on both engines.
// The embedded engine exchanges rows as JSON with chDB (JSONCompact out,
// JSONCompactEachRow in, with the session's format settings fixed at open),
// InsertRows looking up the column types first (DESCRIBE TABLE); the native
// engine converts inserted values to the driver's type for each column and
// refuses lossy conversions.
package warehouse
