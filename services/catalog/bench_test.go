package catalog

import (
	"fmt"
	"testing"
	"time"

	catalogv1 "github.com/sluicehq/sluice/api/sluice/catalog/v1"
)

// BenchmarkPushCorpus pushes every project folder of the corpus, each into an empty
// workspace: parse, validate, plan, check in ClickHouse (chDB) and, for the folders whose
// dependencies are all present, deploy. TARGETS.md P6: the whole corpus in <= 3 s.
func BenchmarkPushCorpus(b *testing.B) {
	s, _ := newTestService(b)
	projects := corpusProjects(b)
	var sets [][]*catalogv1.Datafile
	files := 0
	for _, dir := range projects {
		fs := readProject(b, dir)
		files += len(fs)
		sets = append(sets, fs)
	}
	ctx := operatorCtx(b, s)
	var total time.Duration
	run := 0
	for b.Loop() {
		run++
		t0 := time.Now()
		deployed := 0
		for i, fs := range sets {
			ws := fmt.Sprintf("bench%d_%d", run, i)
			operatorCtx(b, s, ws)
			resp, err := s.Push(ctx, &catalogv1.PushRequest{Workspace: ws, Files: fs})
			if err == nil && resp.GetApplied() {
				deployed++
			}
		}
		total += time.Since(t0)
		if deployed == 0 {
			b.Fatal("no corpus project deployed")
		}
	}
	b.ReportMetric(total.Seconds()/float64(run), "s/corpus")
	b.ReportMetric(float64(files*run)/total.Seconds(), "files/s")
}
