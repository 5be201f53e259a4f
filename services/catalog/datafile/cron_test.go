package datafile

import (
	"strings"
	"testing"
)

// TestScheduleThatNeverRuns: a COPY_SCHEDULE whose days never come (30 February) is refused
// at push, naming the fields and where they are; schedules that run rarely are accepted.
func TestScheduleThatNeverRuns(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string // "" when accepted
	}{
		{"0 0 30 2 *", `day of month field "30" and month field "2" never meet: February has at most 29 days`},
		{"0 0 31 4,6,9,11 *", `day of month field "31" and month field "4,6,9,11" never meet: April, June, September, November have at most 30 days`},
		{"15 3 30-31 FEB *", `never meet: February has at most 29 days`},
		{"0 0 29 2 *", ""},      // leap years
		{"0 0 30 2 MON", ""},    // day of week restricted too: Mondays of February
		{"0 0 31 */2 *", ""},    // January, March, ...
		{"0 0 31 1-12/3 *", ""}, // January, April, July, October: January has 31
		{"0 0 31 4-12/2 *", ""}, // April, June, August (31), ...
		{"0 0 30,31 2,3 *", ""}, // March
		{"*/5 * 31 11 *", "November has at most 30 days"},
	} {
		err := ValidateSchedule(tc.expr)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.expr, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.expr, err, tc.want)
		}
	}
	src := "NODE n\nSQL >\n    SELECT 1 AS x\n\nTYPE COPY\nTARGET_DATASOURCE t\nCOPY_SCHEDULE 0 0 30 2 *\n"
	_, err := ParsePipe("pipes/feb.pipe", []byte(src), Options{})
	if err == nil || !strings.Contains(err.Error(), "pipes/feb.pipe:7:15") || !strings.Contains(err.Error(), `day of month field "30"`) {
		t.Errorf("push of a schedule that never runs: %v, want an error at pipes/feb.pipe:7:15 naming the day of month field", err)
	}
}
