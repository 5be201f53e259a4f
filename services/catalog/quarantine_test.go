package catalog

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
	"github.com/sluicehq/sluice/platform/warehouse"
)

// TestQuarantineTables follows a Data Source's quarantine table through its life: created with
// it (every column Nullable(String) and the error columns), readable by a copy pipe, given the
// columns the Data Source gains, dropped with it; a Data Source named like another one's
// quarantine table is refused at push.
func TestQuarantineTables(t *testing.T) {
	s, wh := newTestService(t)
	ctx := operatorCtx(t, s, "q")
	db := s.cfg.DatabasePrefix + "q"
	columns := func() string {
		t.Helper()
		res, err := wh.Query(ctx, "SELECT name, type FROM system.columns WHERE database = "+warehouse.QuoteString(db)+" AND table = 'events_quarantine'")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range res.Rows {
			out = append(out, r[0].(string)+" "+r[1].(string))
		}
		return strings.Join(out, ", ")
	}
	push := func(kv ...string) error {
		_, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "q", Files: files(kv...)})
		return err
	}
	recover := "NODE fix\nSQL >\n    SELECT parseDateTimeBestEffort(assumeNotNull(timestamp)) AS timestamp, assumeNotNull(session_id) AS session_id, assumeNotNull(action) AS action, toInt64OrZero(assumeNotNull(amount)) AS amount\n    FROM events_quarantine\n\nTYPE COPY\nTARGET_DATASOURCE events\n"
	if err := push("events.datasource", eventsDS, "recover.pipe", recover); err != nil {
		t.Fatal(err)
	}
	if got, want := columns(), "timestamp Nullable(String), session_id Nullable(String), action Nullable(String), amount Nullable(String), c__error_column Array(String), c__error Array(String), c__import_id Nullable(String), insertion_date DateTime"; got != want {
		t.Errorf("quarantine columns:\n%s\nwant\n%s", got, want)
	}
	withColumn := strings.Replace(eventsDS, "amount Int64", "amount Int64,\n    note String DEFAULT 'none'", 1)
	if err := push("events.datasource", withColumn, "recover.pipe", recover); err != nil {
		t.Fatal(err)
	}
	if got := columns(); !strings.HasSuffix(got, "insertion_date DateTime, note Nullable(String)") {
		t.Errorf("quarantine columns after ADD COLUMN: %s", got)
	}
	err := push("events.datasource", withColumn, "events_quarantine.datasource", eventsDS)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "events_quarantine.datasource") || !strings.Contains(err.Error(), "quarantine table of Data Source events") {
		t.Errorf("a Data Source named events_quarantine: %v", err)
	}
	if _, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: "q", Files: files("other.datasource", eventsDS), Prune: true}); err != nil {
		t.Fatal(err)
	}
	if got := count(t, wh, "SELECT count() FROM system.tables WHERE database = "+warehouse.QuoteString(db)+" AND name = 'events_quarantine'"); got != 0 {
		t.Error("events_quarantine outlived events")
	}
}
