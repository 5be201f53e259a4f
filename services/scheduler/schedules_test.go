package scheduler

import (
	"testing"
	"time"
)

func TestParseCopySchedule(t *testing.T) {
	for _, tc := range []struct {
		expr      string
		scheduled bool
		bad       bool
	}{
		{"", false, false},
		{"@on-demand", false, false},
		{"0 * * * *", true, false},
		{"1-59/5 * * * *", true, false},
		{"@hourly", true, false},
		{"* * * *", false, true},
		{"0 0 * * * *", false, true}, // 6 fields: seconds are not part of COPY_SCHEDULE
	} {
		sch, err := ParseCopySchedule(tc.expr)
		if (err != nil) != tc.bad || (sch != nil) != tc.scheduled {
			t.Errorf("ParseCopySchedule(%q) = %v, %v", tc.expr, sch, err)
		}
	}
}

func TestScheduledMaxExecutionTime(t *testing.T) {
	tick := time.Date(2024, 6, 1, 16, 0, 0, 0, time.UTC)
	for expr, want := range map[string]time.Duration{
		"* * * * *":      30 * time.Second,
		"*/5 * * * *":    150 * time.Second,
		"0 * * * *":      30 * time.Minute,
		"0 0 * * *":      30 * time.Minute,
		"1-59/5 * * * *": 30 * time.Second, // 16:00 → 16:01
	} {
		sch, err := ParseCopySchedule(expr)
		if err != nil {
			t.Fatal(err)
		}
		if got := ScheduledMaxExecutionTime(sch, tick); got != want {
			t.Errorf("%s: %s, want %s", expr, got, want)
		}
	}
}

func TestTickJobIDIsDeterministicAndSorts(t *testing.T) {
	t1 := time.Date(2024, 6, 1, 16, 0, 0, 0, time.UTC)
	a, b := TickJobID("ws", "p", t1, 0), TickJobID("ws", "p", t1, 0)
	if a != b || len(a) != 20 {
		t.Fatalf("ids %q %q", a, b)
	}
	if TickJobID("ws", "q", t1, 0) == a || TickJobID("ws2", "p", t1, 0) == a || TickJobID("ws", "p", t1, 1) == a {
		t.Error("different pipes, workspaces or salts share an id")
	}
	if later := TickJobID("ws", "p", t1.Add(time.Hour), 0); later <= a {
		t.Errorf("ids do not sort by tick: %s then %s", a, later)
	}
}
