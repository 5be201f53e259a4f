// Package idempotency makes retries safe (AIP-155): a request that carries a request_id runs
// once, and every retry with the same id within Window gets the first call's answer and starts
// nothing new. Answers are kept in the NATS KV bucket sluice_requests, shared by every replica
// of every service, so a retry that reaches another process is answered the same way.
//
// Request ids belong to their caller (the token that sent them): another token sending the same
// id makes a request of its own, and never gets this one's answer. Answers can hold secrets
// (the tokens a push or CreateToken makes), so the bucket holds them encrypted (AES-256-GCM)
// with a key derived from the caller's token and the request id, neither of which is stored:
// reading the bucket tells nothing but that some request was made.
//
// A call claims its id with a create (compare-and-set) before it runs and keeps a heartbeat on
// the claim while it runs; a retry that arrives meanwhile waits for the answer. A claim whose
// heartbeat stopped (its process died) is taken over by the next retry, which keeps the first
// call's FirstSeen: services that start jobs derive the job id from the request (see Request),
// so a job the dead process had already created is found, not created again. A call that fails
// releases its claim: nothing was changed (Sluice's calls change nothing when they fail), so a
// retry runs again; a call that changed something before it failed (Applied: an append whose
// rows were stored, then waiting for them timed out) keeps its error as its answer instead.
package idempotency

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	commonv1 "github.com/sluicehq/sluice/api/sluice/common/v1"
	"github.com/sluicehq/sluice/platform/apierr"
	"github.com/sluicehq/sluice/platform/natsx"
)

const (
	// Bucket is the KV bucket of request ids and answers.
	Bucket = "sluice_requests"
	// Window is how long an answer is kept: a retry later than this runs as a new request.
	Window = 24 * time.Hour
	// lease is how long a claim lives without a heartbeat before a retry takes it over; a
	// running call renews its claim every third of it.
	lease = 30 * time.Second
	// maxWait is how long a retry waits for a running first call before it answers
	// REQUEST_IN_PROGRESS.
	maxWait = 20 * time.Second
	// maxAnswer bounds a stored answer (below the NATS payload limit); a larger answer is not
	// kept, and a retry runs the call again (only Push answers can be that large, and pushing
	// the same files again changes nothing).
	maxAnswer = 900 << 10
)

// FieldName is the request field that carries the id.
const FieldName = "request_id"

// Caller is who sends a request id: ID names the caller (a token, stably across rotations) and
// Secret is the credential the call presented, from which the key of its stored answer is
// derived.
type Caller struct {
	ID     string
	Secret []byte
}

// Request is the request id of the call a context belongs to.
type Request struct {
	// ID is the request_id.
	ID string
	// FirstSeen is when the first call with this id claimed it; retries keep it.
	FirstSeen time.Time
	// Caller is the Caller.ID of the call: request ids are their caller's.
	Caller string
}

type ctxKey struct{}

// FromContext returns the request id of the call, if it carries one.
func FromContext(ctx context.Context) (Request, bool) {
	r, ok := ctx.Value(ctxKey{}).(Request)
	return r, ok
}

// WithRequest attaches a request id to ctx (tests, and calls made on behalf of a request).
func WithRequest(ctx context.Context, r Request) context.Context {
	return context.WithValue(ctx, ctxKey{}, r)
}

// record is a claim or an answer in the bucket.
type record struct {
	Fingerprint string `json:"f"`
	FirstSeen   int64  `json:"t"`
	Heartbeat   int64  `json:"h"`
	Done        bool   `json:"d"`
	// Answer is the response as a marshalled Any, sealed with the caller's key (nonce first);
	// empty when too large to keep.
	Answer []byte `json:"a,omitempty"`
}

// Store runs calls once per request id.
type Store struct {
	js  jetstream.JetStream
	now func() time.Time
	// lease and maxWait are the package's constants; tests shorten them.
	lease, maxWait time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewStore uses js; the bucket is made on first use (so a process starts while NATS is down).
func NewStore(js jetstream.JetStream) *Store {
	return &Store{js: js, now: time.Now, lease: lease, maxWait: maxWait}
}

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := natsx.CreateOrUpdateKeyValue(ctx, s.js, jetstream.KeyValueConfig{
		Bucket: Bucket, Description: "request ids and their answers (idempotent retries)",
		TTL: Window, Storage: jetstream.FileStorage, History: 1,
	})
	if err != nil {
		return nil, apierr.Unavailable(commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "request ids: NATS: %v", err)
	}
	s.kv = kv
	return kv, nil
}

// RequestID returns the request_id a request carries ("" for none or no such field).
func RequestID(req proto.Message) string {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName(FieldName)
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		return ""
	}
	return m.Get(fd).String()
}

// Applied marks the error of a call that changed something before it failed: a retry with the
// same request id gets this error again instead of running the call a second time.
func Applied(err error) error {
	if err == nil {
		return nil
	}
	return &appliedError{err: err}
}

type appliedError struct{ err error }

func (e *appliedError) Error() string              { return e.err.Error() }
func (e *appliedError) Unwrap() error              { return e.err }
func (e *appliedError) GRPCStatus() *status.Status { return apierr.Status(e.err) }
func isApplied(err error) bool                     { var a *appliedError; return errors.As(err, &a) }

// Do runs call once for req's request id sent by caller (method names the RPC); without a
// request id it just runs call. A retry gets the first answer; the same id with another request
// is REQUEST_ID_REUSED; a retry while the first call runs waits for it, or answers
// REQUEST_IN_PROGRESS (with RetryInfo) when that takes long. An answer that was too large to
// keep, or that cannot be opened (the caller's token was rotated since), is made again by
// running call: every call that takes a request id changes nothing when it runs again, or
// finds what its first run started.
func (s *Store) Do(ctx context.Context, caller Caller, method string, req proto.Message, call func(context.Context) (proto.Message, error)) (proto.Message, error) {
	return s.DoID(ctx, caller, method, RequestID(req), req, call)
}

// DoID is Do for a request id that req does not hold at its top level (the first message of a
// client stream): req is what a retry must repeat for the id to be the same request.
func (s *Store) DoID(ctx context.Context, caller Caller, method, id string, req proto.Message, call func(context.Context) (proto.Message, error)) (proto.Message, error) {
	if id == "" {
		return call(ctx)
	}
	if u, err := uuid.Parse(id); err != nil || u == uuid.Nil || len(id) != 36 {
		e := apierr.InvalidArgument(FieldName, "%q is not a UUID such as 3f1c2b8e-5d3a-4b6e-9a0f-1c2d3e4f5a6b: make one per intended change and send it again with every retry", id)
		return nil, e
	}
	if caller.ID == "" || len(caller.Secret) == 0 {
		// Calls reach handlers only through the auth gate, so this is a wiring mistake: fail
		// closed rather than share answers between callers.
		return nil, &apierr.Error{Code: codes.Unauthenticated, Reason: commonv1.ErrorReason_ERROR_REASON_UNAUTHENTICATED,
			Message: "a request_id needs the call's token, and none reached this server"}
	}
	kv, err := s.bucket(ctx)
	if err != nil {
		return nil, err
	}
	key := recordKey(caller, method, id)
	seal := sealer(caller.Secret, method, id, key)
	fp := fingerprint(req)
	deadline := s.now().Add(s.maxWait)
	for {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			now := s.now()
			rev, cerr := kv.Create(ctx, key, encode(record{Fingerprint: fp, FirstSeen: now.UnixNano(), Heartbeat: now.UnixNano()}))
			if errors.Is(cerr, jetstream.ErrKeyExists) {
				continue // another call claimed it a moment ago
			}
			if cerr != nil {
				return nil, unavailable(cerr)
			}
			return s.run(ctx, kv, key, rev, record{Fingerprint: fp, FirstSeen: now.UnixNano()}, Request{ID: id, Caller: caller.ID}, seal, call)
		case err != nil:
			return nil, unavailable(err)
		}
		var rec record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("request id record %s: %w", key, err)
		}
		if rec.Fingerprint != fp {
			return nil, apierr.BadRequest(commonv1.ErrorReason_ERROR_REASON_REQUEST_ID_REUSED,
				fmt.Sprintf("request_id %s was used for a different request within %s: make a new id for each intended change", id, Window),
				apierr.Violation(FieldName, "used for a different request"))
		}
		if rec.Done {
			plain, err := seal.open(rec.Answer)
			if len(rec.Answer) == 0 || err != nil {
				return call(WithRequest(ctx, Request{ID: id, FirstSeen: time.Unix(0, rec.FirstSeen), Caller: caller.ID}))
			}
			return answer(plain, key)
		}
		if s.now().Sub(time.Unix(0, rec.Heartbeat)) > s.lease {
			// The claim's process stopped: take it over, keeping the first call's FirstSeen.
			rec.Heartbeat = s.now().UnixNano()
			rev, uerr := kv.Update(ctx, key, encode(rec), e.Revision())
			if uerr != nil {
				continue // someone else took it, or it finished
			}
			return s.run(ctx, kv, key, rev, rec, Request{ID: id, Caller: caller.ID}, seal, call)
		}
		if s.now().After(deadline) {
			e := &apierr.Error{Code: codes.Aborted, Reason: commonv1.ErrorReason_ERROR_REASON_REQUEST_IN_PROGRESS,
				Message:    fmt.Sprintf("the first call with request_id %s is still running: retry with the same id to get its answer", id),
				RetryDelay: 2 * time.Second}
			return nil, e
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run calls call as the holder of the claim at rev, renewing it until call returns, then stores
// the answer (or releases the claim when call failed).
func (s *Store) run(ctx context.Context, kv jetstream.KeyValue, key string, rev uint64, rec record, req Request, seal answerSeal, call func(context.Context) (proto.Message, error)) (proto.Message, error) {
	var mu sync.Mutex
	stop := make(chan struct{})
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		t := time.NewTicker(s.lease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				mu.Lock()
				r := rec
				r.Heartbeat = s.now().UnixNano()
				if n, err := kv.Update(context.Background(), key, encode(r), rev); err == nil {
					rev = n
				}
				mu.Unlock()
			}
		}
	}()
	req.FirstSeen = time.Unix(0, rec.FirstSeen)
	resp, err := call(WithRequest(ctx, req))
	close(stop)
	<-beat
	mu.Lock()
	defer mu.Unlock()
	if err != nil && !isApplied(err) {
		_ = kv.Delete(context.Background(), key, jetstream.LastRevision(rev))
		return nil, err
	}
	done := rec
	done.Done, done.Heartbeat = true, s.now().UnixNano()
	if err != nil {
		// The error is the answer: a retry gets it again.
		resp = apierr.Status(err).Proto()
	}
	if a, aerr := anypb.New(resp); aerr == nil {
		if b, merr := proto.Marshal(a); merr == nil && len(b) <= maxAnswer {
			done.Answer = seal.seal(b)
		}
	}
	// Should this write fail, the claim stays until its lease ends and a retry runs the call
	// again: services that start jobs find the job by its request-derived id then.
	_, _ = kv.Update(context.Background(), key, encode(done), rev)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// answer reads a stored answer: a response, or the status of an Applied error.
func answer(plain []byte, key string) (proto.Message, error) {
	a := &anypb.Any{}
	if err := proto.Unmarshal(plain, a); err != nil {
		return nil, fmt.Errorf("request id answer %s: %w", key, err)
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, fmt.Errorf("request id answer %s: %w", key, err)
	}
	if st, ok := m.(*spb.Status); ok {
		return nil, status.ErrorProto(st)
	}
	return m, nil
}

// recordKey is the bucket key of a caller's request id on a method.
func recordKey(caller Caller, method, id string) string {
	sum := sha256.Sum256([]byte(method + "\x00" + caller.ID + "\x00" + id))
	return hex.EncodeToString(sum[:16])
}

// answerSeal encrypts and decrypts one request's stored answer.
type answerSeal struct {
	aead cipher.AEAD
	// ad binds a sealed answer to its record's key.
	ad []byte
}

// sealer derives the answer key from the caller's credential, the method and the request id
// (HMAC-SHA256 keyed by the credential): the bucket stores none of them.
func sealer(secret []byte, method, id, key string) answerSeal {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("sluice request answer\x00" + method + "\x00" + id))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return answerSeal{aead: aead, ad: []byte(key)}
}

func (a answerSeal) seal(plain []byte) []byte {
	nonce := make([]byte, a.aead.NonceSize(), a.aead.NonceSize()+len(plain)+a.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil // not kept: a retry runs the call again
	}
	return a.aead.Seal(nonce, nonce, plain, a.ad)
}

func (a answerSeal) open(sealed []byte) ([]byte, error) {
	n := a.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("sealed answer too short")
	}
	return a.aead.Open(nil, sealed[:n], sealed[n:], a.ad)
}

func encode(r record) []byte {
	b, _ := json.Marshal(r)
	return b
}

func unavailable(err error) error {
	return apierr.Unavailable(commonv1.ErrorReason_ERROR_REASON_UNAVAILABLE, "request ids: NATS: %v", err)
}

// fingerprint identifies a request apart from its request id.
func fingerprint(req proto.Message) string {
	c := proto.Clone(req)
	m := c.ProtoReflect()
	if fd := m.Descriptor().Fields().ByName(FieldName); fd != nil {
		m.Clear(fd)
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	sum := sha256.Sum256(append([]byte(m.Descriptor().FullName()+"\x00"), b...))
	return hex.EncodeToString(sum[:16])
}
