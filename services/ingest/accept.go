package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	ingestv1 "github.com/sluicehq/sluice/api/sluice/ingest/v1"
)

// Kinds of append, as the ops log names them.
const (
	kindHFI  = "hfi"  // the Events API: ops event append-hfi
	kindFile = "file" // gRPC appends (files, the CLI): ops event append
)

// appendRequest is one append, whatever its transport.
type appendRequest struct {
	workspace, datasource string
	format                ingestv1.Format
	header                ingestv1.CSVHeader
	body                  io.Reader
	kind                  string
	wait                  bool
	replace               bool
	// maxInput bounds the input once decompressed (0: no bound).
	maxInput int64
	// fileName is the appended file's name, for the ops log.
	fileName string
	// importID, when set, is the request's import id (made from its request id: the parts a
	// retry stores again carry the same message ids, which JetStream drops as duplicates).
	importID string
}

// appendResult is what the caller is told.
type appendResult struct {
	rows, quarantined, bytes uint64
	importID                 string
}

// errLimited is a request over its workspace's rate limits.
type errLimited struct {
	retryAfter time.Duration
	what       string
}

func (e *errLimited) Error() string {
	return fmt.Sprintf("rate limit of %s reached; retry after %s", e.what, e.retryAfter.Round(time.Millisecond))
}

// errUnavailable is a request that could not be stored (JetStream full or unreachable).
type errUnavailable struct{ err error }

func (e *errUnavailable) Error() string { return "rows could not be stored: " + e.err.Error() }
func (e *errUnavailable) Unwrap() error { return e.err }

// errWaitTimeout: the rows are stored and will be written, but were not visible in time.
var errWaitTimeout = errors.New("the rows are accepted but were not written within the wait timeout; they will be written")

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

// accept converts a request whole, then stores it in JetStream (or, for a replace, writes it
// to ClickHouse at once). Nothing is stored when conversion fails: the request is refused
// whole.
func (s *Service) accept(ctx context.Context, req appendRequest) (appendResult, error) {
	res := appendResult{importID: req.importID}
	if res.importID == "" {
		res.importID = randomID() + randomID()
	}
	sc, err := s.schemas.get(ctx, req.workspace, req.datasource)
	if err != nil {
		return res, err
	}
	lim := s.limits.of(req.workspace)
	if req.kind == kindHFI {
		if d, what := allow(lim.requests, 1, "requests per second"); d > 0 {
			return res, &errLimited{d, what}
		}
	}
	br := getReader(req.body)
	defer putReader(br)
	in, err := decompress(br)
	if err != nil {
		return res, err
	}
	counted := &countingReader{r: in}
	var input io.Reader = counted
	if req.maxInput > 0 {
		input = &capReader{r: counted, max: req.maxInput}
	}
	sp := &spool{}
	defer sp.close()
	enc := newEncoder(sc, res.importID)
	defer enc.release()
	partBytes := s.partBytes()
	err = convertInput(input, req.format, req.header, enc, partBytes, func(e *encoded) error {
		res.rows += e.rows
		res.quarantined += e.quarantined
		return sp.add(e)
	})
	res.bytes = counted.n
	if err != nil {
		return res, err
	}
	if d, what := allow(lim.bytes, int(res.bytes), "bytes per second"); d > 0 {
		return res, &errLimited{d, what}
	}
	if d, what := allow(lim.rows, int(res.rows+res.quarantined), "rows per second"); d > 0 {
		return res, &errLimited{d, what}
	}
	if req.replace {
		return res, s.replace(ctx, sc, sp, res)
	}
	var last uint64
	if len(sp.parts) == 0 {
		if !req.wait {
			return res, nil
		}
		// Nothing to write: wait=true then waits for what was accepted before it.
		info, err := s.stream.Info(ctx)
		if err != nil {
			return res, &errUnavailable{err}
		}
		last = info.State.LastSeq
	} else if last, err = s.publish(ctx, sc, req, sp, res); err != nil {
		return res, err
	}
	s.metrics.rows.Add(float64(res.rows))
	s.metrics.quarantined.Add(float64(res.quarantined))
	if req.wait {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
		defer cancel()
		if err := s.seen.wait(wctx, last); err != nil {
			return res, errWaitTimeout
		}
	}
	return res, nil
}

// partBytes is the most rows one message carries, under the server's payload limit.
func (s *Service) partBytes() int {
	max := int(s.deps.NATS.NC.MaxPayload())
	if max <= 0 {
		max = 1 << 20
	}
	return min(max-(32<<10), 8<<20)
}

// publish stores the request's parts; it returns the stream sequence of the last one.
func (s *Service) publish(ctx context.Context, sc *schema, req appendRequest, sp *spool, res appendResult) (uint64, error) {
	subject := SubjectPrefix + "." + req.workspace + "." + req.datasource
	now := strconv.FormatInt(time.Now().UnixNano(), 10)
	var last uint64
	for i := range sp.parts {
		p, data, err := sp.read(i)
		if err != nil {
			return 0, err
		}
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(hdrWorkspace, req.workspace)
		m.Header.Set(hdrDataSource, req.datasource)
		m.Header.Set(hdrDatasourceID, sc.id)
		m.Header.Set(hdrDatabase, sc.database)
		m.Header.Set(hdrRequest, res.importID)
		m.Header.Set(hdrPart, fmt.Sprintf("%d/%d", i+1, len(sp.parts)))
		m.Header.Set(hdrRows, strconv.FormatUint(p.rows, 10))
		m.Header.Set(hdrQuarantined, strconv.FormatUint(p.quarantined, 10))
		m.Header.Set(hdrSplit, strconv.Itoa(p.split))
		m.Header.Set(hdrKind, req.kind)
		m.Header.Set(hdrColumns, sc.columnList)
		if req.fileName != "" {
			m.Header.Set(hdrFile, req.fileName)
		}
		m.Header.Set(hdrTime, now)
		if i == len(sp.parts)-1 {
			m.Header.Set(hdrBytes, strconv.FormatUint(res.bytes, 10))
		}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s/%d", res.importID, i+1))
		ack, err := s.deps.NATS.JS.PublishMsg(ctx, m)
		if err != nil {
			return 0, &errUnavailable{err}
		}
		last = ack.Sequence
	}
	return last, nil
}

// spool keeps a request's converted parts until the whole input has converted: in memory,
// moving to a temporary file past 32 MiB.
type spool struct {
	parts []spoolPart
	mem   []byte
	file  *os.File
	size  int64
}

type spoolPart struct {
	off, n            int64
	split             int
	rows, quarantined uint64
}

const spoolMemory = 32 << 20

func (sp *spool) add(e *encoded) error {
	p := spoolPart{off: sp.size, n: int64(len(e.data) + len(e.quarantine)), split: len(e.data), rows: e.rows, quarantined: e.quarantined}
	if sp.file == nil && sp.size+p.n > spoolMemory {
		f, err := os.CreateTemp("", "sluice-ingest-*")
		if err != nil {
			return err
		}
		_ = os.Remove(f.Name()) // deleted when closed
		if _, err := f.Write(sp.mem); err != nil {
			_ = f.Close()
			return err
		}
		sp.file, sp.mem = f, nil
	}
	if sp.file != nil {
		if _, err := sp.file.Write(e.data); err != nil {
			return err
		}
		if _, err := sp.file.Write(e.quarantine); err != nil {
			return err
		}
	} else {
		sp.mem = append(sp.mem, e.data...)
		sp.mem = append(sp.mem, e.quarantine...)
	}
	sp.size += p.n
	sp.parts = append(sp.parts, p)
	return nil
}

func (sp *spool) read(i int) (spoolPart, []byte, error) {
	p := sp.parts[i]
	if sp.file == nil {
		return p, sp.mem[p.off : p.off+p.n], nil
	}
	buf := make([]byte, p.n)
	_, err := sp.file.ReadAt(buf, p.off)
	return p, buf, err
}

func (sp *spool) close() {
	if sp.file != nil {
		_ = sp.file.Close()
	}
}
