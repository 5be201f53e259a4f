package opslog

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

func benchEnv(b *testing.B, name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func benchConfig() Config {
	return Config{BatchSize: benchBatch(), FlushInterval: 200 * time.Millisecond, Retention: 180 * 24 * time.Hour, AckWait: time.Minute}
}

// BenchmarkOpsLogThroughput fills the stream with events (OPSLOG_BENCH_EVENTS, default
// 500,000, over 20 Data Sources of one workspace), then starts the writer on each engine
// (chDB; clickhouse-server over the native protocol) and reports the sustained rate at which
// it writes them: events/s from its start until the last batch is acknowledged (the table is
// then checked to hold each event once). P7: ≥ 50,000/s.
func BenchmarkOpsLogThroughput(b *testing.B) {
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) { benchThroughput(b, e) })
	}
}

func benchThroughput(b *testing.B, e engine) {
	n := benchEnv(b, "OPSLOG_BENCH_EVENTS", 500000)
	for range b.N {
		b.StopTimer()
		wh := e.open(b)
		db := warehousetest.NewDatabase(b, wh)
		nc := startNATS(b)
		ctx := context.Background()
		if _, err := opsevents.EnsureStream(ctx, nc); err != nil {
			b.Fatal(err)
		}
		now := time.Now()
		for i := range n {
			ev := testEvent("bench", fmt.Sprintf("ds%02d", i%20), i)
			ev.Id = uuid.Must(uuid.NewV7()).String() // as Publish makes them: time-ordered
			ev.Timestamp = timestamppb.New(now.Add(time.Duration(i) * time.Millisecond))
			ev.PipeName, ev.Options = "copy_pipe", map[string]string{"mode": "append", "execution_type": "scheduled"}
			data, _ := proto.Marshal(ev)
			if i%2000 == 0 {
				<-nc.JS.PublishAsyncComplete() // stay under the client's outstanding limit
			}
			if _, err := nc.JS.PublishMsgAsync(&nats.Msg{Subject: opsevents.Subject("bench"), Data: data,
				Header: nats.Header{jetstream.MsgIDHeader: []string{ev.Id}}}); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-nc.JS.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			b.Fatal("stream not filled")
		}
		b.StartTimer()
		start := time.Now()
		s := startService(b, benchConfig(), nc, wh, db, hooks{})
		checkfor.State(b, 10*time.Minute, "the stream written", func() (bool, string) {
			info := consumerInfo(b, s)
			return info.NumPending == 0 && info.NumAckPending == 0, fmt.Sprintf("pending=%d", info.NumPending)
		})
		elapsed := time.Since(start)
		b.StopTimer()
		if rows, ids := counts(b, wh, db); rows != uint64(n) || ids != uint64(n) {
			b.Fatalf("table has %d rows, %d ids; want %d", rows, ids, n)
		}
		b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
		stopService(b, s)
	}
}

// BenchmarkOpsLogLatency publishes events at a steady rate (OPSLOG_BENCH_RATE per second,
// default 5,000, for OPSLOG_BENCH_SECONDS, default 10) while the writer runs on each engine, and
// reports the event-to-visible latency: from the call to Publish to the writer's notification
// that the event's insert committed (the notification is sent after the commit, so the event is
// visible in the table then). P7: p99 ≤ 2 s.
func BenchmarkOpsLogLatency(b *testing.B) {
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) { benchLatency(b, e) })
	}
}

func benchLatency(b *testing.B, e engine) {
	rate := benchEnv(b, "OPSLOG_BENCH_RATE", 5000)
	secs := benchEnv(b, "OPSLOG_BENCH_SECONDS", 10)
	for range b.N {
		b.StopTimer()
		wh := e.open(b)
		db := warehousetest.NewDatabase(b, wh)
		nc := startNATS(b)
		s := startService(b, benchConfig(), nc, wh, db, hooks{})
		total := rate * secs
		var mu sync.Mutex
		sent := make(map[string]time.Time, total)
		lat := make([]time.Duration, 0, total)
		done := make(chan struct{})
		sub, err := nc.NC.Subscribe(SubjectWritten+".bench", func(m *nats.Msg) {
			at := time.Now()
			var batch opslogv1.QueryEventsResponse
			if proto.Unmarshal(m.Data, &batch) != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ev := range batch.GetEvents() {
				if t0, ok := sent[ev.GetId()]; ok {
					lat = append(lat, at.Sub(t0))
					delete(sent, ev.GetId())
				}
			}
			if len(lat) == total {
				close(done)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		// Publishers: 8 goroutines, each paced to its share of the rate.
		const workers = 8
		var wg sync.WaitGroup
		start := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pub := opsevents.NewPublisher(nc, nil)
				for i := w; i < total; i += workers {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					ev := testEvent("bench", fmt.Sprintf("ds%02d", i%20), i)
					ev.Id = uuid.Must(uuid.NewV7()).String() // as Publish makes them: time-ordered
					mu.Lock()
					sent[ev.Id] = time.Now()
					mu.Unlock()
					if err := pub.Publish(context.Background(), ev); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			mu.Lock()
			b.Fatalf("%d of %d events never became visible", total-len(lat), total)
		}
		b.StopTimer()
		_ = sub.Unsubscribe()
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		b.ReportMetric(pct(0.50), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
		b.ReportMetric(float64(total)/time.Since(start).Seconds(), "events/s")
		stopService(b, s)
	}
}

// benchBatch is the batch size the benchmarks run with: OPSLOG_BENCH_BATCH, else the default
// of -opslog.batch-size.
func benchBatch() int {
	if v, err := strconv.Atoi(os.Getenv("OPSLOG_BENCH_BATCH")); err == nil && v > 0 {
		return v
	}
	var c Config
	fs := flag.NewFlagSet("opslog", flag.ContinueOnError)
	c.RegisterFlags(fs)
	return c.BatchSize
}
