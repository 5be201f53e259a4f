package scheduler

import (
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// cronParser reads COPY_SCHEDULE: 5 fields (minute hour day-of-month month day-of-week) or a
// descriptor such as @hourly, in UTC.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCopySchedule parses a COPY_SCHEDULE; "" and "@on-demand" are not schedules (nil, nil).
func ParseCopySchedule(expr string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" || strings.EqualFold(expr, "@on-demand") {
		return nil, nil
	}
	if f := strings.Fields(expr); len(f) == 5 {
		f[4] = sundayAsZero(f[4])
		expr = strings.Join(f, " ")
	}
	return cronParser.Parse(expr)
}

// sundayAsZero writes Sunday as 0 in a day-of-week field: cron (and the catalog, which
// validates COPY_SCHEDULE at push) accepts 7 for Sunday, the parser only 0.
func sundayAsZero(field string) string {
	items := strings.Split(field, ",")
	for i, item := range items {
		rng, step, hasStep := strings.Cut(item, "/")
		lo, hi, isRange := strings.Cut(rng, "-")
		switch {
		case rng == "7":
			items[i] = "0"
		case isRange && hi == "7":
			a, err := strconv.Atoi(lo)
			if err != nil {
				continue
			}
			every := 1
			if hasStep {
				if every, err = strconv.Atoi(step); err != nil || every < 1 {
					continue
				}
			}
			out := ""
			if a <= 6 {
				out = lo + "-6"
				if hasStep {
					out += "/" + step
				}
			}
			if (7-a)%every == 0 {
				out = strings.TrimPrefix(out+",0", ",")
			}
			items[i] = out
		}
	}
	return strings.Join(items, ",")
}

// ScheduledMaxExecutionTime is the default maximum execution time of the job of a tick: half
// the period to the next tick, at most 30 minutes.
func ScheduledMaxExecutionTime(sch cron.Schedule, tick time.Time) time.Duration {
	d := sch.Next(tick).Sub(tick) / 2
	if d <= 0 || d > maxScheduledExecution {
		d = maxScheduledExecution
	}
	return d
}
