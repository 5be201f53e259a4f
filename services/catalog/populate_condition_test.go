package catalog

import (
	"strings"
	"testing"
)

func TestCheckCondition(t *testing.T) {
	for cond, want := range map[string]string{
		"id > 3 AND name != 'x'":               "",
		"(a = 1 OR b = 2) AND c IN (1, 2)":     "",
		"s = ')'":                              "",
		"1) OR (1":                             "unbalanced ')'",
		"(1":                                   "unbalanced '('",
		"1; DROP TABLE t":                      "no ';'",
		"id IN (SELECT id FROM t)":             "subqueries",
		"1 UNION ALL SELECT 1":                 "UNION",
		"1 SETTINGS max_threads = 1":           "SETTINGS",
		"1 FORMAT JSON":                        "FORMAT",
		"x IN (WITH 1 AS y SELECT y)":          "subqueries",
		"toDate(ts) >= '2024-01-01' -- ) OR (": "",
	} {
		err := checkCondition(cond)
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", cond, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: %v, want an error with %q", cond, err, want)
		}
	}
}
