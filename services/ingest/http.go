package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// EventsPath is the Events API's path, as on the hosted platform.
const EventsPath = "/v0/events"

// DefaultWorkspace is the workspace of an Events API request that names none.
const DefaultWorkspace = "default"

// eventsPattern is the Events API's entry in the scope table.
const eventsPattern = "POST " + EventsPath

func (s *Service) httpHandler() (http.Handler, error) {
	var h http.Handler = http.HandlerFunc(s.handleEvents)
	if s.deps.Guard != nil {
		var err error
		if h, err = s.deps.Guard(eventsPattern, h); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle(EventsPath, h)
	return mux, nil
}

// eventsResponse is the hosted platform's response body.
type eventsResponse struct {
	SuccessfulRows  uint64 `json:"successful_rows"`
	QuarantinedRows uint64 `json:"quarantined_rows"`
}

type errorResponse struct {
	Error string `json:"error"`
}

// workspaceOf is the one place an HTTP request's workspace comes from: the `workspace` query
// parameter (which the auth gate fills in from a workspace token), or the X-Sluice-Workspace
// header, else the default workspace.
func workspaceOf(r *http.Request) string {
	if ws := r.URL.Query().Get("workspace"); ws != "" {
		return ws
	}
	if ws := r.Header.Get("X-Sluice-Workspace"); ws != "" {
		return ws
	}
	return DefaultWorkspace
}

// handleEvents is POST /v0/events?name=<datasource>[&wait=true]: NDJSON rows (gzip accepted,
// Content-Encoding: gzip or by content).
func (s *Service) handleEvents(w http.ResponseWriter, r *http.Request) {
	code := s.serveEvents(w, r)
	s.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (s *Service) serveEvents(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeError(w, http.StatusMethodNotAllowed, "use POST")
	}
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		return writeError(w, http.StatusBadRequest, "the 'name' parameter (the Data Source) is required")
	}
	if !validName(name) {
		return writeError(w, http.StatusBadRequest, fmt.Sprintf("'name': %q is not a Data Source name", name))
	}
	ws := workspaceOf(r)
	if !validName(ws) {
		return writeError(w, http.StatusBadRequest, fmt.Sprintf("workspace %q is not a workspace name", ws))
	}
	if r.ContentLength > s.cfg.MaxRequestBytes {
		return writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is %d bytes, over the limit of %d; split it into smaller requests", r.ContentLength, s.cfg.MaxRequestBytes))
	}
	switch f := strings.ToLower(q.Get("format")); f {
	case "", "ndjson", "json":
	default:
		return writeError(w, http.StatusBadRequest, fmt.Sprintf("format %q: the Events API takes ndjson", f))
	}
	wait := false
	if v := q.Get("wait"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%q: expected true or false", v))
		}
		wait = b
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxRequestBytes)
	res, err := s.accept(r.Context(), appendRequest{
		workspace: ws, datasource: name, format: ingestv1.Format_FORMAT_NDJSON, kind: kindHFI, wait: wait,
		body: body, maxInput: 10 * s.cfg.MaxRequestBytes,
	})
	s.rateHeaders(w, ws)
	out := eventsResponse{SuccessfulRows: res.rows, QuarantinedRows: res.quarantined}
	var mbe *http.MaxBytesError
	var fe *formatError
	var le *errLimited
	var ue *errUnavailable
	switch {
	case err == nil && wait:
		return writeJSON(w, http.StatusOK, out)
	case err == nil, errors.Is(err, errWaitTimeout):
		return writeJSON(w, http.StatusAccepted, out)
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		return writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over the limit of %d bytes (%d uncompressed); split it into smaller requests", s.cfg.MaxRequestBytes, 10*s.cfg.MaxRequestBytes))
	case isUnknown(err):
		return writeError(w, http.StatusNotFound, err.Error())
	case errors.As(err, &fe):
		return writeError(w, http.StatusBadRequest, "the request is not NDJSON: "+fe.Error()+"; nothing was written")
	case errors.As(err, &le):
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(le.retryAfter.Seconds()))))
		return writeError(w, http.StatusTooManyRequests, fmt.Sprintf("workspace %s: %s; nothing was written", ws, le.Error()))
	case errors.As(err, &ue):
		w.Header().Set("Retry-After", "1")
		return writeError(w, http.StatusServiceUnavailable, err.Error()+"; nothing was acknowledged, retry")
	}
	s.log.Error("events api", "workspace", ws, "datasource", name, "err", err)
	return writeError(w, http.StatusInternalServerError, err.Error())
}

// rateHeaders sets the hosted platform's rate-limit headers for the workspace's requests per
// second: the limit, what is left now, and the seconds until the bucket is full again.
func (s *Service) rateHeaders(w http.ResponseWriter, ws string) {
	b := s.limits.of(ws).requests
	if b == nil {
		return
	}
	tokens := max(0, b.Tokens())
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(b.Burst()))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(int(tokens)))
	h.Set("X-RateLimit-Reset", strconv.Itoa(int(math.Ceil((float64(b.Burst())-tokens)/float64(b.Limit())))))
}

func writeJSON(w http.ResponseWriter, code int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
	return code
}

func writeError(w http.ResponseWriter, code int, msg string) int {
	return writeJSON(w, code, errorResponse{Error: msg})
}

// validName is a workspace or Data Source name that can be a subject token and a table name.
func validName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

var errTooLarge = errors.New("request too large")

// capReader fails once more than max bytes were read (a gzip bomb).
type capReader struct {
	r   io.Reader
	max int64
	n   int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, errTooLarge
	}
	return n, err
}
