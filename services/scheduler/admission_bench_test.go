package scheduler

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	persistencev1 "github.com/sluicehq/sluice/api/sluice/persistence/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/jobs"
)

// BenchmarkAdmission is the leader's share of P4 (bench/README.md): 500 limited jobs created at
// once in a workspace whose limit holds them all, as a copy schedule's tick creates them (64 at
// a time); the figure is each job's time from its record being created to the leader's
// admission of it (the record says admitted), p50 and p99, and the time until every job's step
// is on the queue. Real embedded NATS with JetStream, no ClickHouse: nothing but the job system.
func BenchmarkAdmission(b *testing.B) {
	const n, workers = 500, 64
	conn := embeddedNATS(b)
	// The default limit holds every job of a round.
	cfg := testConfig()
	cfg.CopyConcurrency = n
	s, err := New(cfg, Deps{NATS: conn, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Stop(context.Background()) })
	ctx := context.Background()
	checkfor.Eventually(b, 20*time.Second, "leadership", s.IsLeader)
	var lat []time.Duration
	var all []time.Duration
	round := 0
	for b.Loop() {
		round++
		ws := fmt.Sprintf("admission_%d", round)
		w, err := s.store.KV.Watch(ctx, ws+".>", jetstream.UpdatesOnly())
		if err != nil {
			b.Fatal(err)
		}
		admitted := map[string]time.Time{}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range w.Updates() {
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				if rec, err := jobs.Decode(e.Value()); err == nil && rec.GetAdmitted() {
					if _, ok := admitted[e.Key()]; !ok {
						admitted[e.Key()] = time.Now()
					}
					if len(admitted) == n {
						return
					}
				}
			}
		}()
		created := make([]time.Time, n)
		keys := make([]string, n)
		start := time.Now()
		work := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					now := time.Now()
					rec := &persistencev1.JobRecord{
						Job: &schedulerv1.Job{
							Id: jobs.NewID(now), Workspace: ws, Kind: schedulerv1.JobKind_JOB_KIND_NOOP,
							Status: schedulerv1.JobStatus_JOB_STATUS_WAITING, CreateTime: timestamppb.New(now), UpdateTime: timestamppb.New(now),
						},
						Steps:   []*persistencev1.StepSpec{{Id: "0"}},
						Limited: true,
					}
					if _, err := s.store.Create(ctx, rec); err != nil {
						b.Error(err)
						continue
					}
					created[i], keys[i] = time.Now(), jobs.Key(ws, rec.GetJob().GetId())
				}
			}()
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("%d of %d jobs admitted within 2 minutes", len(admitted), n)
		}
		_ = w.Stop()
		// Every admitted job's one step is on the queue, once.
		checkfor.Eventually(b, 20*time.Second, "every step on the queue", func() bool {
			info, err := s.jobs.Steps.Info(ctx, jetstream.WithSubjectFilter(jobs.SubjectSteps+"."+ws+".>"))
			return err == nil && info.State.Msgs == n
		})
		all = append(all, time.Since(start))
		for i, k := range keys {
			lat = append(lat, admitted[k].Sub(created[i]))
		}
		// The queue is emptied for the next round's count (no executor runs here).
		if err := s.jobs.Steps.Purge(ctx, jetstream.WithPurgeSubject(jobs.SubjectSteps+"."+ws+".>")); err != nil {
			b.Fatal(err)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[int(0.99*float64(len(lat)-1))]), "p99-ms")
	b.ReportMetric(ms(all[len(all)/2]), "all-queued-ms")
}
