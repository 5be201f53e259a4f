package step

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/platform/warehouse"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
		code  int32
	}{
		{"memory limit", &warehouse.Error{Code: 241, Class: warehouse.ClassMemoryLimit}, true, 241},
		{"too many parts, wrapped", fmt.Errorf("copy: %w", &warehouse.Error{Code: 252, Class: warehouse.ClassRetryable}), true, 252},
		{"timeout", &warehouse.Error{Code: 159, Class: warehouse.ClassTimeout}, true, 159},
		{"syntax error", &warehouse.Error{Code: 62, Class: warehouse.ClassPermanent}, false, 62},
		{"unknown ClickHouse error", &warehouse.Error{Code: 9999, Class: warehouse.ClassUnknown}, false, 9999},
		{"runner says permanent, over a retryable cause", Permanent(&warehouse.Error{Code: 252, Class: warehouse.ClassRetryable}), false, 252},
		{"runner says transient", Transient(errors.New("catalog unreachable")), true, 0},
		{"network", fmt.Errorf("dial: %w", context.DeadlineExceeded), true, 0},
		{"plain error", errors.New("bad step payload"), false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retry, code := Classify(tc.err)
			if retry != tc.retry || code != tc.code {
				t.Errorf("Classify(%v) = %v, %d; want %v, %d", tc.err, retry, code, tc.retry, tc.code)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}
	for i, w := range want {
		if got := Backoff(int32(i + 1)); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := Backoff(100); got != 30*time.Second {
		t.Errorf("Backoff(100) = %s, want the 30s cap", got)
	}
}
