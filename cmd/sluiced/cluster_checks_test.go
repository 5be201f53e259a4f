package main_test

import (
	"fmt"
	"strings"
)

// checkPopulate checks daily (populated from scratch) and country_totals (fed by every
// populate's cascade so far) against the events, row by row.
func (r *clusterRun) checkPopulate(populates int) {
	r.t.Helper()
	want := r.rows("SELECT toDate(ts) AS day, country, sum(amount), count() FROM {db}.events GROUP BY day, country ORDER BY day, country")
	got := r.rows("SELECT day, country, sum(total), sum(n) FROM {db}.daily GROUP BY day, country ORDER BY day, country")
	// A step loads one month of events into the month's partition of daily.
	r.checkRows(fmt.Sprintf("populate %d: daily", populates), want, got)
	want = r.rows(fmt.Sprintf("SELECT country, sum(amount) * %d, count() * %d FROM {db}.events GROUP BY country ORDER BY country", populates, populates))
	got = r.rows("SELECT country, sum(total), sum(n) FROM {db}.country_totals GROUP BY country ORDER BY country")
	if diff := diffRows(want, got); diff != "" {
		r.t.Fatalf("after %d populates, country_totals (the cascade) differs:\n%s", populates, diff)
	}
}

// checkRows compares rows with the rows they must be: exactly, on every engine.
func (r *clusterRun) checkRows(what string, want, got []string) {
	r.t.Helper()
	if diff := diffRows(want, got); diff != "" {
		r.t.Fatalf("%s differs:\n%s", what, diff)
	}
}

func diffRows(want, got []string) string {
	if strings.Join(want, "\n") == strings.Join(got, "\n") {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "want %d rows, got %d\n", len(want), len(got))
	for i := 0; i < max(len(want), len(got)) && b.Len() < 2000; i++ {
		var w, g string
		if i < len(want) {
			w = want[i]
		}
		if i < len(got) {
			g = got[i]
		}
		if w != g {
			fmt.Fprintf(&b, "  row %d: want %q got %q\n", i, w, g)
		}
	}
	return b.String()
}
