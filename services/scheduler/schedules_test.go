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

// TestSundayAsSeven: every day-of-week field the catalog accepts at push (0-7, 7 = Sunday)
// parses, and its ticks fall on the same days as with 0.
func TestSundayAsSeven(t *testing.T) {
	from := time.Date(2024, 6, 3, 0, 0, 0, 0, time.UTC) // a Monday
	for _, tc := range []struct{ expr, same string }{
		{"0 0 * * 7", "0 0 * * 0"},
		{"0 0 * * 5-7", "0 0 * * 0,5,6"},
		{"0 0 * * 1-7/2", "0 0 * * 1,3,5,0"},
		{"0 0 * * 2-7/2", "0 0 * * 2,4,6"},
		{"0 0 1 1 7", "0 0 1 1 0"},
		{"0 0 * * 6,7", "0 0 * * 6,0"},
	} {
		a, err := ParseCopySchedule(tc.expr)
		if err != nil {
			t.Errorf("%q: %v", tc.expr, err)
			continue
		}
		b, err := ParseCopySchedule(tc.same)
		if err != nil {
			t.Fatal(err)
		}
		ta, tb := from, from
		for range 20 {
			ta, tb = a.Next(ta), b.Next(tb)
			if !ta.Equal(tb) || ta.IsZero() {
				t.Errorf("%q ticks at %s, %q at %s", tc.expr, ta, tc.same, tb)
				break
			}
		}
	}
}
