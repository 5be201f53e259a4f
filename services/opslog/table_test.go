package opslog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func TestSupportsTTL(t *testing.T) {
	for v, want := range map[string]bool{"18.16.1": false, "19.5.3": false, "19.6.2": true, "26.7.3.1": true, "": true} {
		if got := supportsTTL(v); got != want {
			t.Errorf("supportsTTL(%q) = %v", v, got)
		}
	}
}

// TestRetention: on chDB the table has a TTL of the retention, changed when the retention
// changes; on ClickHouse 18.16 (no TTL) the months older than the retention are dropped.
func TestRetention(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			wh := e.open(t)
			db := warehousetest.NewDatabase(t, wh)
			nc := startNATS(t)
			cfg := testConfig()
			cfg.Retention = 30 * 24 * time.Hour
			s := startService(t, cfg, nc, wh, db, hooks{})
			engineFull := func() string {
				res, err := wh.Query(context.Background(), "SELECT engine_full FROM system.tables WHERE database = "+
					warehouse.QuoteString(db)+" AND name = 'datasources_ops_log'")
				if err != nil {
					t.Fatal(err)
				}
				return res.Rows[0][0].(string)
			}
			if !s.dropByPartition {
				if full := engineFull(); !strings.Contains(full, "TTL timestamp + toIntervalSecond(2592000)") {
					t.Fatalf("table definition without the TTL: %s", full)
				}
				stopService(t, s)
				cfg.Retention = 60 * 24 * time.Hour
				startService(t, cfg, nc, wh, db, hooks{})
				if full := engineFull(); !strings.Contains(full, "toIntervalSecond(5184000)") {
					t.Fatalf("retention not updated: %s", full)
				}
				return
			}
			if e.name == "chdb" {
				t.Fatal("chDB has TTL")
			}
			now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
			pub := opsevents.NewPublisher(nc, nil)
			for i, at := range []time.Time{now.AddDate(0, -3, 0), now.AddDate(0, 0, -40), now.AddDate(0, 0, -29), now} {
				ev := testEvent("acme", "sales", i)
				ev.Timestamp = timestamppb.New(at)
				publish(t, pub, ev)
			}
			waitWritten(t, s, wh, 4)
			dropped, err := s.dropExpired(context.Background(), now)
			if err != nil {
				t.Fatal(err)
			}
			// Cut-off 2026-10-23: August ended before it; October did not.
			if fmt.Sprint(dropped) != "[202608]" {
				t.Fatalf("dropped %v, want [202608]", dropped)
			}
			if rows, _ := counts(t, wh, db); rows != 3 {
				t.Fatalf("%d rows after retention, want 3", rows)
			}
		})
	}
}
