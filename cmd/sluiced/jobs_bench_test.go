package main_test

import (
	"context"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	executorv1 "github.com/sluicehq/sluice/api/sluice/executor/v1"
	schedulerv1 "github.com/sluicehq/sluice/api/sluice/scheduler/v1"
	"github.com/sluicehq/sluice/cmd/sluiced/sluicetest"
)

// BenchmarkJobDispatch is target P5: empty (NOOP) jobs through the whole control plane —
// RunNoopJob over gRPC → job record in KV → step on JetStream → executor → record DONE → ack —
// in the all-in-one process. Each iteration submits SLUICE_BENCH_JOBS jobs (default 20,000) from
// 64 concurrent clients and ends when the executor has finished them all; jobs/s is the figure.
// The machines are shared: cpu-us/job (the process's CPU time per job, chDB's idle threads
// included) and cpu-bound-jobs/s (what the process's CPU cost allows on 2 cores) say what the
// figure would be on an idle machine.
func BenchmarkJobDispatch(b *testing.B) {
	n := 20000
	if v := os.Getenv("SLUICE_BENCH_JOBS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	sys := sluicetest.Start(b, sluicetest.WithArgs("-executor.concurrency", "256", "-log-level", "warn"))
	ctx := context.Background()
	var total, cpu time.Duration
	for range b.N {
		cpu0 := processCPU()
		st, err := sys.Executor.GetStatus(ctx, &executorv1.GetStatusRequest{})
		if err != nil {
			b.Fatal(err)
		}
		base := st.GetStepsDone()
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for next.Add(1) <= int64(n) {
					if _, err := sys.Scheduler.RunNoopJob(ctx, &schedulerv1.RunNoopJobRequest{Workspace: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		b.Logf("submitted %d jobs in %s", n, time.Since(start))
		sluicetest.Eventually(b, 5*time.Minute, "all jobs done", func() bool {
			st, err := sys.Executor.GetStatus(ctx, &executorv1.GetStatusRequest{})
			return err == nil && st.GetStepsDone()-base >= int64(n)
		})
		total += time.Since(start)
		cpu += processCPU() - cpu0
	}
	jobs := float64(n) * float64(b.N)
	b.ReportMetric(jobs/total.Seconds(), "jobs/s")
	b.ReportMetric(float64(cpu.Microseconds())/jobs, "cpu-us/job")
	b.ReportMetric(2*jobs/cpu.Seconds(), "cpu-bound-jobs/s")
}

// processCPU is the user and system CPU time of the test process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkJobRedeliveryAfterKill measures how long a step waits after its executor is killed
// (SIGKILL) before another executor runs it, with the default ack wait (10s; target p99 ≤ 15s).
// Reports the mean and the maximum over SLUICE_BENCH_KILLS kills (default 3).
func BenchmarkJobRedeliveryAfterKill(b *testing.B) {
	kills := 3
	if v := os.Getenv("SLUICE_BENCH_KILLS"); v != "" {
		kills, _ = strconv.Atoi(v)
	}
	sys := sluicetest.Start(b, sluicetest.WithArgs("-target", "catalog,scheduler,opslog", "-log-level", "warn"))
	c := sys.Scheduler
	var times []time.Duration
	for range b.N {
		for i := range kills {
			victim, addr := startExecutorProcess(b, sys, "victim-"+strconv.Itoa(i), "-executor.ack-wait", "10s")
			job := runNoop(b, c, "ws", map[string]string{"sleep": "60s"}, 0)
			ex := sluicetest.NewClients(b, addr, sys.Token).Executor
			sluicetest.Eventually(b, 30*time.Second, "the step to run", func() bool {
				st, err := ex.GetStatus(context.Background(), &executorv1.GetStatusRequest{})
				return err == nil && len(st.GetRunning()) == 1
			})
			rp, raddr := startExecutorProcess(b, sys, "rescuer-"+strconv.Itoa(i), "-executor.ack-wait", "10s")
			rescuer := sluicetest.NewClients(b, raddr, sys.Token).Executor
			victim.Kill()
			killed := time.Now()
			sluicetest.Eventually(b, 60*time.Second, "the step to be redelivered", func() bool {
				st, err := rescuer.GetStatus(context.Background(), &executorv1.GetStatusRequest{})
				return err == nil && len(st.GetRunning()) == 1
			})
			times = append(times, time.Since(killed))
			if _, err := c.CancelJob(context.Background(), &schedulerv1.CancelJobRequest{Workspace: "ws", Id: job.GetId()}); err != nil {
				b.Fatal(err)
			}
			waitJob(b, c, "ws", job.GetId(), 30*time.Second, cancelled)
			rp.Kill() // the next round's step must go to its own victim
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var sum time.Duration
	for _, d := range times {
		sum += d
	}
	b.ReportMetric(sum.Seconds()/float64(len(times)), "mean-redelivery-s")
	b.ReportMetric(times[len(times)-1].Seconds(), "max-redelivery-s")
}
