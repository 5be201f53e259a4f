package step

import (
	"log/slog"
	"testing"
	"time"
)

func TestParseFaults(t *testing.T) {
	fs, err := ParseFaults("attach.after@2:sleep=10ms; commit.recorded:sleep=1ms")
	if err != nil {
		t.Fatal(err)
	}
	if r := fs.rules["attach.after"]; r == nil || r.nth != 2 || r.sleep != 10*time.Millisecond || r.kill {
		t.Errorf("attach.after rule = %+v", r)
	}
	log := slog.New(slog.DiscardHandler)
	fs.hit("attach.after", log) // the first hit: not the armed one
	if r := fs.rules["attach.after"]; r.hits != 1 || r.passed {
		t.Errorf("after one hit: %+v, want the rule still armed for the second", r)
	}
	fs.hit("attach.after", log)
	if fs.rules["attach.after"].hits != 2 || !fs.rules["attach.after"].passed {
		t.Errorf("after two hits: %+v", fs.rules["attach.after"])
	}
	fs.hit("no.such.point", log)
	for _, bad := range []string{"attach.after", "x@0:kill", "x:explode", "x:sleep=soon"} {
		if _, err := ParseFaults(bad); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
	if fs, err := ParseFaults(""); err != nil || len(fs.rules) != 0 {
		t.Errorf("empty spec: %v, %v", fs, err)
	}
}
