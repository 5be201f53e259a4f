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
	sets := make([]cronSet, len(fields))
	for i, f := range fields {
		var err error
		if sets[i], err = cronFields[i].expand(f); err != nil {
			return err
		}
	}
	return neverFires(fields, sets)
}

// cronSet is the values a cron field matches, and whether it is unrestricted ('*'): cron runs
// a schedule on the days its day-of-month AND its day-of-week match when either is '*', and on
// the days either matches when both are restricted.
type cronSet struct {
	values map[int]bool
	star   bool
}

// daysIn is the most days each month has (February in a leap year).
var daysIn = [13]int{0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

var monthNames = [13]string{"", "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"}

// neverFires refuses a schedule whose days never come: a day of month (with the day of week
// unrestricted, or both unrestricted) that none of its months has, such as 30 February.
func neverFires(fields []string, sets []cronSet) error {
	dom, month, dow := sets[2], sets[3], sets[4]
	if dom.star || (!dow.star) {
		return nil // every month has days of every week, and every day of month 1-28
	}
	var months []string
	longest := 0
	for m := 1; m <= 12; m++ {
		if !month.values[m] {
			continue
		}
		months = append(months, monthNames[m])
		longest = max(longest, daysIn[m])
		for d := range dom.values {
			if d <= daysIn[m] {
				return nil
			}
		}
	}
	return fmt.Errorf("day of month field %q and month field %q never meet: %s %s at most %d days, so the schedule would never run",
		fields[2], fields[3], strings.Join(months, ", "), map[bool]string{true: "has", false: "have"}[len(months) == 1], longest)
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

// expand checks a field and returns the values it matches.
func (cf cronField) expand(f string) (cronSet, error) {
	set := cronSet{values: map[int]bool{}}
	for _, item := range strings.Split(f, ",") {
		if item == "" {
			return set, fmt.Errorf("%s field %q: empty list item", cf.name, f)
		}
		rng, step, hasStep := strings.Cut(item, "/")
		every := 1
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 || step[0] == '+' {
				return set, fmt.Errorf("%s field %q: step %q must be a positive number", cf.name, f, step)
			}
			every = n
		}
		a, b := cf.min, cf.max
		if rng == "*" {
			set.star = set.star || every == 1
		} else {
			lo, hi, isRange := strings.Cut(rng, "-")
			var err error
			if a, err = cf.value(lo); err != nil {
				return set, err
			}
			b = a
			if !isRange && hasStep {
				return set, fmt.Errorf("%s field %q: a step needs a range, e.g. %s-%d/%s", cf.name, f, lo, cf.max, step)
			}
			if isRange {
				if b, err = cf.value(hi); err != nil {
					return set, err
				}
				if a > b {
					return set, fmt.Errorf("%s field %q: range start %d is after its end %d", cf.name, f, a, b)
				}
			}
		}
		for v := a; v <= b; v += every {
			set.values[v] = true
		}
	}
	return set, nil
}
