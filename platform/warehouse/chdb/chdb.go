//go:build cgo

package chdb

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// chdb.h is not shipped with the library; these declarations follow the
// chDB 3.x C API. chdb_connect returns a pointer to the connection handle;
// queries take the handle itself, chdb_close_conn the pointer again.
typedef void *chdb_conn_handle;
typedef void chdb_res;

typedef chdb_conn_handle *(*fn_connect)(int, char **);
typedef void (*fn_close_conn)(chdb_conn_handle *);
typedef chdb_res *(*fn_query_n)(chdb_conn_handle, const char *, size_t, const char *, size_t);
typedef char *(*fn_result_buffer)(chdb_res *);
typedef size_t (*fn_result_length)(chdb_res *);
typedef const char *(*fn_result_error)(chdb_res *);
typedef uint64_t (*fn_result_u64)(chdb_res *);
typedef double (*fn_result_elapsed)(chdb_res *);
typedef void (*fn_destroy_result)(chdb_res *);
typedef void (*fn_set_signal_handlers_enabled)(int);
typedef const char *(*fn_version)(void);

static struct {
	fn_connect connect;
	fn_close_conn close_conn;
	fn_query_n query_n;
	fn_result_buffer buffer;
	fn_result_length length;
	fn_result_error error;
	fn_result_u64 rows_read, bytes_read, storage_rows_read, storage_bytes_read, rows_written, bytes_written;
	fn_result_elapsed elapsed;
	fn_destroy_result destroy;
	fn_set_signal_handlers_enabled set_signal_handlers_enabled;
	fn_version version;
} api;

// sluice_chdb_load opens the library and resolves every symbol. It returns
// NULL on success or a static/dlerror message naming what failed.
static const char *sluice_chdb_load(const char *path, const char **missing) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return dlerror();
#define SYM(field, name) \
	if ((*(void **)&api.field = dlsym(h, name)) == NULL) { *missing = name; return "missing symbol"; }
	SYM(connect, "chdb_connect")
	SYM(close_conn, "chdb_close_conn")
	SYM(query_n, "chdb_query_n")
	SYM(buffer, "chdb_result_buffer")
	SYM(length, "chdb_result_length")
	SYM(error, "chdb_result_error")
	SYM(rows_read, "chdb_result_rows_read")
	SYM(bytes_read, "chdb_result_bytes_read")
	SYM(storage_rows_read, "chdb_result_storage_rows_read")
	SYM(storage_bytes_read, "chdb_result_storage_bytes_read")
	SYM(rows_written, "chdb_result_rows_written")
	SYM(bytes_written, "chdb_result_bytes_written")
	SYM(elapsed, "chdb_result_elapsed")
	SYM(destroy, "chdb_destroy_query_result")
	SYM(set_signal_handlers_enabled, "chdb_set_signal_handlers_enabled")
	SYM(version, "chdb_version")
#undef SYM
	return NULL;
}

// The Go runtime owns the process's signal handlers (it turns SIGSEGV into
// panics, preempts goroutines with SIGURG, ...) and requires any handler
// that may run on its threads to use SA_ONSTACK. chDB may reset or install
// handlers while it disables its own and while it boots (measured on 26.7:
// it installs one for SIGRTMIN, used to collect stack traces of all the
// process's threads), so every handler is saved before those two calls and
// put back where chDB changed it (system.stack_trace still answers).
#define SLUICE_NSIG 65
static struct sigaction saved_actions[SLUICE_NSIG];

static void save_signals(void) {
	for (int s = 1; s < SLUICE_NSIG; s++) sigaction(s, NULL, &saved_actions[s]);
}

static int restore_signals(void) {
	int restored = 0;
	for (int s = 1; s < SLUICE_NSIG; s++) {
		struct sigaction now;
		if (sigaction(s, NULL, &now) != 0) continue;
		if (now.sa_handler != saved_actions[s].sa_handler || now.sa_flags != saved_actions[s].sa_flags) {
			sigaction(s, &saved_actions[s], NULL);
			restored++;
		}
	}
	return restored;
}

static chdb_conn_handle *sluice_chdb_connect(int argc, char **argv, int *signals_restored) {
	save_signals();
	api.set_signal_handlers_enabled(0);
	chdb_conn_handle *c = api.connect(argc, argv);
	*signals_restored = restore_signals();
	return c;
}

static void sluice_chdb_close(chdb_conn_handle *c) { api.close_conn(c); }

typedef struct {
	char *buf;
	size_t len;
	const char *error;
	uint64_t rows_read, bytes_read, storage_rows_read, storage_bytes_read, rows_written, bytes_written;
	double elapsed;
	chdb_res *res;
} sluice_result;

static void sluice_chdb_query(chdb_conn_handle *c, const char *q, size_t qlen, const char *f, size_t flen, sluice_result *out) {
	memset(out, 0, sizeof(*out));
	chdb_res *r = api.query_n(*c, q, qlen, f, flen);
	out->res = r;
	if (r == NULL) return;
	out->error = api.error(r);
	out->buf = api.buffer(r);
	out->len = api.length(r);
	out->rows_read = api.rows_read(r);
	out->bytes_read = api.bytes_read(r);
	out->storage_rows_read = api.storage_rows_read(r);
	out->storage_bytes_read = api.storage_bytes_read(r);
	out->rows_written = api.rows_written(r);
	out->bytes_written = api.bytes_written(r);
	out->elapsed = api.elapsed(r);
}

static void sluice_chdb_destroy(chdb_res *r) { if (r != NULL) api.destroy(r); }

static const char *sluice_chdb_version(void) { return api.version(); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

var lib struct {
	mu   sync.Mutex
	path string // set once the library is loaded; dlopen cannot be undone safely
}

// Load opens libchdb.so at path. The library is loaded once per process:
// loading the same path again is a no-op, another path is an error.
func Load(path string) error {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.path != "" {
		if lib.path != path {
			return fmt.Errorf("chdb: library already loaded from %s, cannot load %s in the same process", lib.path, path)
		}
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w at %s", ErrNotFound, path)
		}
		return fmt.Errorf("chdb: %w", err)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var missing *C.char
	if msg := C.sluice_chdb_load(cpath, &missing); msg != nil {
		if missing != nil {
			return fmt.Errorf("chdb: load %s: %s %s (chDB 3.x or later is required)", path, C.GoString(msg), C.GoString(missing))
		}
		return fmt.Errorf("chdb: load %s: %s", path, C.GoString(msg))
	}
	lib.path = path
	return nil
}

// Version reports the chDB release of the loaded library.
func Version() string {
	lib.mu.Lock()
	defer lib.mu.Unlock()
	if lib.path == "" {
		return ""
	}
	return C.GoString(C.sluice_chdb_version())
}

// Conn is a chDB connection. chDB runs one statement at a time per
// connection (it queues them internally); Conn adds no locking of its own.
type Conn struct {
	h *C.chdb_conn_handle
}

// Connect opens a connection with command-line style arguments, for example
// {"clickhouse", "--path=/data"}. Load must have succeeded first. chDB allows
// one open data directory per process: a second Connect to a different path
// fails (chDB returns NULL).
func Connect(args []string) (*Conn, error) {
	lib.mu.Lock()
	loaded := lib.path != ""
	lib.mu.Unlock()
	if !loaded {
		return nil, errors.New("chdb: Connect before Load")
	}
	argv := make([]*C.char, len(args))
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	defer func() {
		for _, p := range argv {
			C.free(unsafe.Pointer(p))
		}
	}()
	cargv := (**C.char)(C.malloc(C.size_t(len(argv)) * C.size_t(unsafe.Sizeof(argv[0]))))
	defer C.free(unsafe.Pointer(cargv))
	copy(unsafe.Slice(cargv, len(argv)), argv)

	var restored C.int
	h := C.sluice_chdb_connect(C.int(len(args)), cargv, &restored)
	if h == nil || *h == nil {
		return nil, fmt.Errorf("chdb: connect %q failed (is another data directory open in this process, or is the directory unusable?)", args)
	}
	return &Conn{h: h}, nil
}

// Query runs one statement and returns its output in format (for example
// "JSONCompact"; output of statements without a result is empty). It blocks
// until chDB has finished the statement: chDB cannot interrupt it.
func (c *Conn) Query(query, format string) (Result, error) {
	if c.h == nil {
		return Result{}, errors.New("chdb: query on a closed connection")
	}
	// Pass Go memory without copying: the C side only reads it during the call.
	var qp, fp *C.char
	if len(query) > 0 {
		qp = (*C.char)(unsafe.Pointer(unsafe.StringData(query)))
	}
	if len(format) > 0 {
		fp = (*C.char)(unsafe.Pointer(unsafe.StringData(format)))
	}
	var out C.sluice_result
	C.sluice_chdb_query(c.h, qp, C.size_t(len(query)), fp, C.size_t(len(format)), &out)
	runtime.KeepAlive(query)
	runtime.KeepAlive(format)
	defer C.sluice_chdb_destroy(out.res)
	if out.res == nil {
		return Result{}, errors.New("chdb: query returned no result")
	}
	r := Result{
		RowsRead:         uint64(out.rows_read),
		BytesRead:        uint64(out.bytes_read),
		StorageRowsRead:  uint64(out.storage_rows_read),
		StorageBytesRead: uint64(out.storage_bytes_read),
		RowsWritten:      uint64(out.rows_written),
		BytesWritten:     uint64(out.bytes_written),
		Elapsed:          time.Duration(float64(out.elapsed) * float64(time.Second)),
	}
	if out.error != nil {
		return r, &QueryError{Message: C.GoString(out.error)}
	}
	if out.len > 0 {
		r.Data = make([]byte, int(out.len))
		copy(r.Data, unsafe.Slice((*byte)(unsafe.Pointer(out.buf)), int(out.len)))
	}
	return r, nil
}

// Close closes the connection. chDB shares one connection per data
// directory, so callers must close only the last user.
func (c *Conn) Close() {
	if c.h != nil {
		C.sluice_chdb_close(c.h)
		c.h = nil
	}
}
