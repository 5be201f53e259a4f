// Package opsevents is how every service records an operation in `datasources_ops_log`: it
// publishes an OpsEvent to the JetStream stream SLUICE_OPS, and the opslog service writes the
// stream to ClickHouse. Services never write the ops log to ClickHouse themselves.
//
// Publish returns once JetStream has stored the event (a PubAck): from then on the event
// survives a crash of the publisher and an outage of ClickHouse, and it is written exactly
// once, also when it is published twice with the same id.
package opsevents

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/natsx"
)

// JetStream names shared by publishers and the opslog service.
const (
	// StreamName is the stream of ops events waiting to be written to ClickHouse.
	StreamName = "SLUICE_OPS"
	// SubjectPrefix is followed by the workspace: sluice.ops.<workspace>.
	SubjectPrefix = "sluice.ops"
	// DuplicateWindow is how long JetStream drops a second publish of the same event id; the
	// opslog service drops duplicates of any age when it writes.
	DuplicateWindow = 10 * time.Minute
	// MaxAge bounds how long an event may wait in the stream for ClickHouse to come back.
	MaxAge = 7 * 24 * time.Hour
	// WrittenPrefix is followed by the workspace: after a batch is committed to ClickHouse the
	// opslog writer publishes its events there (core NATS, a QueryEventsResponse), which is what
	// followers of the log and waiters for an event's arrival listen to.
	WrittenPrefix = "sluice.opslog.written"
)

// WrittenSubject is the subject where the opslog writer announces a workspace's events
// committed to ClickHouse.
func WrittenSubject(workspace string) string { return WrittenPrefix + "." + workspace }

// Event types of DATAFILES-SPEC §5.2.
const (
	EventCreate             = "create"
	EventAlter              = "alter"
	EventDelete             = "delete"
	EventTruncate           = "truncate"
	EventRename             = "rename"
	EventAppend             = "append"
	EventAppendHFI          = "append-hfi"
	EventAppendKafka        = "append-kafka"
	EventReplace            = "replace"
	EventDeleteData         = "delete_data"
	EventCopy               = "copy"
	EventPopulateViewQueued = "populateview-queued"
	EventPopulateView       = "populateview"
)

// EventTypes lists every event type, in the spec's order.
var EventTypes = []string{
	EventCreate, EventAppend, EventAppendHFI, EventAppendKafka, EventReplace, EventDelete,
	EventDeleteData, EventTruncate, EventRename, EventAlter, EventPopulateViewQueued,
	EventPopulateView, EventCopy,
}

// Results of an operation.
const (
	ResultOK        = "ok"
	ResultError     = "error"
	ResultCancelled = "cancelled"
)

// eventTypes maps the table's event types to the API's enum.
var eventTypes = map[string]opslogv1.EventType{
	EventCreate: opslogv1.EventType_EVENT_TYPE_CREATE, EventAlter: opslogv1.EventType_EVENT_TYPE_ALTER,
	EventDelete: opslogv1.EventType_EVENT_TYPE_DELETE, EventTruncate: opslogv1.EventType_EVENT_TYPE_TRUNCATE,
	EventRename: opslogv1.EventType_EVENT_TYPE_RENAME, EventAppend: opslogv1.EventType_EVENT_TYPE_APPEND,
	EventAppendHFI: opslogv1.EventType_EVENT_TYPE_APPEND_HFI, EventAppendKafka: opslogv1.EventType_EVENT_TYPE_APPEND_KAFKA,
	EventReplace: opslogv1.EventType_EVENT_TYPE_REPLACE, EventDeleteData: opslogv1.EventType_EVENT_TYPE_DELETE_DATA,
	EventCopy: opslogv1.EventType_EVENT_TYPE_COPY, EventPopulateViewQueued: opslogv1.EventType_EVENT_TYPE_POPULATEVIEW_QUEUED,
	EventPopulateView: opslogv1.EventType_EVENT_TYPE_POPULATEVIEW,
}

var results = map[string]opslogv1.Result{
	ResultOK: opslogv1.Result_RESULT_OK, ResultError: opslogv1.Result_RESULT_ERROR, ResultCancelled: opslogv1.Result_RESULT_CANCELLED,
}

// EventTypeOf is the API's enum for an event type as the table spells it (UNSPECIFIED when
// unknown).
func EventTypeOf(name string) opslogv1.EventType { return eventTypes[name] }

// EventTypeName is the table's spelling of an event type ("" for UNSPECIFIED or unknown).
func EventTypeName(t opslogv1.EventType) string { return nameOf(eventTypes, t) }

// ResultOf is the API's enum for a result as the table spells it.
func ResultOf(name string) opslogv1.Result { return results[name] }

// ResultName is the table's spelling of a result ("" for UNSPECIFIED or unknown).
func ResultName(r opslogv1.Result) string { return nameOf(results, r) }

// nameOf is the table's spelling of v: its key in names ("" when it has none).
func nameOf[V comparable](names map[string]V, v V) string {
	for k, x := range names {
		if x == v {
			return k
		}
	}
	return ""
}

// StreamConfig is the definition of SLUICE_OPS. Limits retention: written events stay
// replayable until MaxAge; the opslog service's durable consumer tracks what it has written.
func StreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "ops events waiting to be written to datasources_ops_log",
		Subjects:    []string{SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      MaxAge,
		Duplicates:  DuplicateWindow,
	}
}

// EnsureStream creates SLUICE_OPS or updates it to StreamConfig; idempotent, safe from every
// process at every start.
func EnsureStream(ctx context.Context, nc *natsx.Conn) (jetstream.Stream, error) {
	return nc.EnsureStream(ctx, StreamConfig())
}

// Subject is the subject of a workspace's events.
func Subject(workspace string) string { return SubjectPrefix + "." + workspace }

// ValidWorkspace reports whether a workspace name can be a subject token.
func ValidWorkspace(ws string) error {
	if ws == "" {
		return errors.New("workspace is required")
	}
	if strings.ContainsAny(ws, ".*> \t\r\n") {
		return fmt.Errorf("workspace %q: may not contain '.', '*', '>' or white space", ws)
	}
	return nil
}

// Validate checks what the ops log needs of an event before it is published.
func Validate(ev *opslogv1.OpsEvent) error {
	if err := ValidWorkspace(ev.GetWorkspace()); err != nil {
		return err
	}
	if EventTypeName(ev.GetEventType()) == "" {
		return fmt.Errorf("event_type %v: not one of %s", ev.GetEventType(), strings.Join(EventTypes, ", "))
	}
	if ResultName(ev.GetResult()) == "" {
		return fmt.Errorf("result %v: not ok, error or cancelled", ev.GetResult())
	}
	if ev.GetDatasourceName() == "" && ev.GetDatasourceId() == "" {
		return errors.New("datasource_name or datasource_id is required")
	}
	if ts := ev.GetTimestamp().AsTime(); ev.GetTimestamp() != nil && (ts.Before(MinTimestamp) || ts.After(MaxTimestamp)) {
		return fmt.Errorf("timestamp %s: outside %d..%d", ts.Format(time.RFC3339), MinTimestamp.Year(), MaxTimestamp.Year())
	}
	return nil
}

// The range of event timestamps: datasources_ops_log stores a DateTime (to 2106), and its TTL
// adds the retention to it.
var (
	MinTimestamp = time.Unix(0, 0).UTC()
	MaxTimestamp = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Publisher records ops events. Publish fills in ev.Id (a new UUID) and ev.Timestamp (now)
// when they are empty, and returns once the event is stored durably; a nil error means the
// event will be in datasources_ops_log exactly once. Publishing the same id again is a no-op.
type Publisher interface {
	Publish(ctx context.Context, ev *opslogv1.OpsEvent) error
}

// JetStreamPublisher publishes to SLUICE_OPS.
type JetStreamPublisher struct {
	nc   *natsx.Conn
	prop propagation.TextMapPropagator
	now  func() time.Time
}

var _ Publisher = (*JetStreamPublisher)(nil)

// NewPublisher returns a publisher on nc; prop (may be nil) carries the caller's trace context
// in the message headers so that the ops log's write joins the operation's trace.
func NewPublisher(nc *natsx.Conn, prop propagation.TextMapPropagator) *JetStreamPublisher {
	return &JetStreamPublisher{nc: nc, prop: prop, now: time.Now}
}

// Publish implements Publisher. When the stream does not exist yet (the opslog service has
// never started), it creates it and publishes again: an event is never refused for that.
func (p *JetStreamPublisher) Publish(ctx context.Context, ev *opslogv1.OpsEvent) error {
	if ev.GetId() == "" {
		ev.Id = uuid.Must(uuid.NewV7()).String()
	}
	if ev.GetTimestamp() == nil {
		ev.Timestamp = timestamppb.New(p.now())
	}
	if err := Validate(ev); err != nil {
		return fmt.Errorf("ops event %s: %w", ev.GetId(), err)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("ops event %s: %w", ev.GetId(), err)
	}
	msg := &nats.Msg{Subject: Subject(ev.GetWorkspace()), Data: data, Header: nats.Header{}}
	if p.prop != nil {
		natsx.InjectTrace(ctx, p.prop, msg.Header)
	}
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(ev.GetId()), jetstream.WithExpectStream(StreamName)}
	// The event id is the message id, so publishing again after a failure that may have stored
	// it (a NATS node dying, a stream electing its leader) stores it once: retry for a while
	// rather than lose an operation's event.
	deadline := time.Now().Add(publishRetryFor)
	wait := 250 * time.Millisecond
	for {
		_, err = p.nc.JS.PublishMsg(ctx, msg, opts...)
		if errors.Is(err, jetstream.ErrNoStreamResponse) {
			if _, serr := EnsureStream(ctx, p.nc); serr != nil {
				err = errors.Join(err, serr)
			} else {
				_, err = p.nc.JS.PublishMsg(ctx, msg, opts...)
			}
		}
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
	if err != nil {
		return fmt.Errorf("publish ops event %s to %s: %w", ev.GetId(), msg.Subject, err)
	}
	return nil
}

// publishRetryFor bounds the retries of an event NATS did not take: longer than a stream
// leader election or a node restart.
const publishRetryFor = 30 * time.Second

// retryable reports whether a publish failed because NATS was unreachable or without a stream
// leader for a moment.
func retryable(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrDisconnected)
}
