package datafile

import (
	"fmt"
	"strconv"
	"strings"
)

type cronField struct {
	name     string
	min, max int
	names    map[string]int
}

var cronFields = []cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{
		"JAN": 1, "FEB": 2, "MAR": 3, "APR": 4, "MAY": 5, "JUN": 6,
		"JUL": 7, "AUG": 8, "SEP": 9, "OCT": 10, "NOV": 11, "DEC": 12}},
	{name: "day of week", min: 0, max: 7, names: map[string]int{
		"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}},
}

// ValidateSchedule accepts a copy schedule: "@on-demand" or a 5-field cron
// (minute hour day-of-month month day-of-week, UTC) made of numbers, names
// (JAN-DEC, SUN-SAT), ranges, steps, lists and '*'. A step without a range
// ("16/1") is refused with the range form to use instead, as the hosted
// platform does (spec §3.2).
func ValidateSchedule(s string) error {
	if s == "" {
		return fmt.Errorf("expected @on-demand or a 5-field cron expression")
	}
	if strings.HasPrefix(s, "@") {
		if s == OnDemand {
			return nil
		}
		return fmt.Errorf("expected @on-demand or a 5-field cron expression, not %s", s)
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		return fmt.Errorf("expected 5 cron fields (minute hour day-of-month month day-of-week), found %d", len(fields))
	}
	for i, f := range fields {
		if err := cronFields[i].validate(f); err != nil {
			return err
		}
	}
	return nil
}

func (cf cronField) value(s string) (int, error) {
	if cf.names != nil {
		if v, ok := cf.names[strings.ToUpper(s)]; ok {
			return v, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("%s field: %q is not a number", cf.name, s)
	}
	if n < cf.min || n > cf.max {
		return 0, fmt.Errorf("%s field: %d is out of range %d-%d", cf.name, n, cf.min, cf.max)
	}
	return n, nil
}

func (cf cronField) validate(f string) error {
	for _, item := range strings.Split(f, ",") {
		if item == "" {
			return fmt.Errorf("%s field %q: empty list item", cf.name, f)
		}
		rng, step, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || step[0] == '+' {
				return fmt.Errorf("%s field %q: step %q must be a positive number", cf.name, f, step)
			}
		}
		if rng == "*" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, err := cf.value(lo)
		if err != nil {
			return err
		}
		if !isRange {
			if hasStep {
				return fmt.Errorf("%s field %q: a step needs a range, e.g. %s-%d/%s", cf.name, f, lo, cf.max, step)
			}
			continue
		}
		b, err := cf.value(hi)
		if err != nil {
			return err
		}
		if a > b {
			return fmt.Errorf("%s field %q: range start %d is after its end %d", cf.name, f, a, b)
		}
	}
	return nil
}
