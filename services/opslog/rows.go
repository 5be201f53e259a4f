package opslog

import (
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/opsevents"
)

// The timestamps the table stores; publishers refuse others (opsevents.Validate), and the
// writer stores one that slipped through at the nearest end, where its look-up finds it again.
var (
	minDateTime = opsevents.MinTimestamp
	maxDateTime = opsevents.MaxTimestamp
)

// eventTime is the event's timestamp as the table stores it (DateTime: whole seconds, UTC).
func eventTime(ev *opslogv1.OpsEvent) time.Time {
	t := ev.GetTimestamp().AsTime().Truncate(time.Second).UTC()
	if t.Before(minDateTime) {
		return minDateTime
	}
	if t.After(maxDateTime) {
		return maxDateTime
	}
	return t
}

// toRow is the table row of an event, in columnNames order.
func toRow(ev *opslogv1.OpsEvent) []any {
	names := make([]string, 0, len(ev.GetOptions()))
	for k := range ev.GetOptions() {
		names = append(names, k)
	}
	sort.Strings(names)
	values := make([]string, len(names))
	for i, k := range names {
		values[i] = ev.GetOptions()[k]
	}
	return []any{
		ev.GetWorkspace(),
		ev.GetId(),
		eventTime(ev),
		opsevents.EventTypeName(ev.GetEventType()),
		ev.GetDatasourceId(),
		ev.GetDatasourceName(),
		opsevents.ResultName(ev.GetResult()),
		ev.GetElapsedTime().AsDuration().Seconds(),
		nullable(ev.GetError()),
		ev.GetRequestId(),
		nullable(ev.GetImportId()),
		nullable(ev.GetJobId()),
		ev.GetRows(),
		ev.GetRowsQuarantine(),
		nonNil(ev.GetBlocksIds()),
		ev.GetOperationId(),
		ev.GetReadRows(),
		optionalSeconds(ev.GetCpuTime()),
		optionalUint(ev.MemoryUsage),
		ev.GetReadBytes(),
		ev.GetWrittenRows(),
		ev.GetWrittenBytes(),
		ev.GetWrittenRowsQuarantine(),
		ev.GetWrittenBytesQuarantine(),
		ev.GetPipeId(),
		ev.GetPipeName(),
		ev.GetRelease(),
		names,
		values,
		nonNil(ev.GetResourceTags()),
		eventTimeNS(ev),
	}
}

// eventTimeNS is the event's full timestamp as the table stores it (TimestampNSColumn).
func eventTimeNS(ev *opslogv1.OpsEvent) int64 {
	t := ev.GetTimestamp().AsTime().UTC()
	if t.Before(minDateTime) {
		t = minDateTime
	}
	if t.After(maxDateTime) {
		t = maxDateTime
	}
	return t.UnixNano()
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// optionalFloat and optionalUint are NULL for a figure the engine did not report.
// optionalSeconds is a Duration as a Nullable column of seconds (unset: NULL).
func optionalSeconds(d *durationpb.Duration) any {
	if d == nil {
		return nil
	}
	return d.AsDuration().Seconds()
}

func optionalUint(v *uint64) any {
	if v == nil {
		return nil
	}
	return *v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// fromRow reads a row of `SELECT <tableColumns>` back into an event.
func fromRow(row []any) (*opslogv1.OpsEvent, error) {
	if len(row) != len(tableColumns) {
		return nil, fmt.Errorf("ops log row has %d values, want %d", len(row), len(tableColumns))
	}
	r := rowReader{row: row}
	ev := &opslogv1.OpsEvent{
		Workspace:              r.str(),
		Id:                     r.str(),
		Timestamp:              timestamppb.New(r.time()),
		EventType:              opsevents.EventTypeOf(r.str()),
		DatasourceId:           r.str(),
		DatasourceName:         r.str(),
		Result:                 opsevents.ResultOf(r.str()),
		ElapsedTime:            seconds(r.float()),
		Error:                  r.str(),
		RequestId:              r.str(),
		ImportId:               r.str(),
		JobId:                  r.str(),
		Rows:                   r.uint(),
		RowsQuarantine:         r.uint(),
		BlocksIds:              r.strs(),
		OperationId:            r.str(),
		ReadRows:               r.uint(),
		CpuTime:                optSeconds(r.optFloat()),
		MemoryUsage:            r.optUint(),
		ReadBytes:              r.uint(),
		WrittenRows:            r.uint(),
		WrittenBytes:           r.uint(),
		WrittenRowsQuarantine:  r.uint(),
		WrittenBytesQuarantine: r.uint(),
		PipeId:                 r.str(),
		PipeName:               r.str(),
		Release:                r.str(),
	}
	names, values := r.strs(), r.strs()
	if len(names) > 0 {
		ev.Options = make(map[string]string, len(names))
		for i, n := range names {
			if i < len(values) {
				ev.Options[n] = values[i]
			}
		}
	}
	ev.ResourceTags = r.strs()
	if ns := r.int(); ns != 0 {
		ev.Timestamp = timestamppb.New(time.Unix(0, ns).UTC())
	}
	return ev, r.err
}

// optSeconds is a Nullable column of seconds as a Duration (NULL: unset).
func optSeconds(f *float64) *durationpb.Duration {
	if f == nil {
		return nil
	}
	return seconds(*f)
}

// seconds is a Float32 column of seconds as a Duration.
func seconds(f float64) *durationpb.Duration {
	return durationpb.New(time.Duration(f * float64(time.Second)).Round(time.Microsecond))
}

func (r *rowReader) int() int64 {
	switch v := r.next().(type) {
	case nil:
		return 0
	case int64:
		return v
	default:
		r.fail(v, "an integer")
	}
	return 0
}

type rowReader struct {
	row []any
	i   int
	err error
}

func (r *rowReader) next() any {
	v := r.row[r.i]
	r.i++
	return v
}

func (r *rowReader) fail(v any, want string) {
	if r.err == nil {
		r.err = fmt.Errorf("ops log column %s: %T is not %s", tableColumns[r.i-1].name, v, want)
	}
}

func (r *rowReader) str() string {
	switch v := r.next().(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		r.fail(v, "a string")
	}
	return ""
}

func (r *rowReader) uint() uint64 {
	switch v := r.next().(type) {
	case nil:
		return 0
	case uint64:
		return v
	case int64:
		return uint64(max(v, 0))
	default:
		r.fail(v, "an integer")
	}
	return 0
}

func (r *rowReader) float() float64 {
	switch v := r.next().(type) {
	case float64:
		return v
	case float32:
		return float64(v)
	default:
		r.fail(v, "a float")
	}
	return 0
}

func (r *rowReader) optFloat() *float64 {
	if r.row[r.i] == nil {
		r.i++
		return nil
	}
	v := r.float()
	return &v
}

func (r *rowReader) optUint() *uint64 {
	if r.row[r.i] == nil {
		r.i++
		return nil
	}
	v := r.uint()
	return &v
}

func (r *rowReader) time() time.Time {
	v := r.next()
	t, ok := v.(time.Time)
	if !ok {
		r.fail(v, "a time")
	}
	return t
}

func (r *rowReader) strs() []string {
	v := r.next()
	switch a := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	case []string:
		return a
	default:
		r.fail(v, "an array")
	}
	return nil
}
