package natsx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestProcessesCreatingTheSameStreamsAtOnce: services that start together ensure the same
// streams and buckets at the same moment. On Debian's nats-server 2.9.10 an update request
// that meets another client's half-done creation of the stream crashed the server (nil store
// in stream.update), and two creations at once could meet each other's subjects; Ensure*
// create first, update only a stream that exists with another configuration and try again
// after such a meeting, so the server survives and every caller gets the stream.
func TestProcessesCreatingTheSameStreamsAtOnce(t *testing.T) {
	url := "nats://" + startDebianNATS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	const callers = 16
	conns := make([]*Conn, callers)
	for i := range conns {
		c, err := Connect(context.Background(), Config{URL: url}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		conns[i] = c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for round := range 300 {
		name := fmt.Sprintf("round%d", round)
		start := make(chan struct{})
		errs := make(chan error, 2*callers)
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				<-start
				_, err := c.EnsureStream(ctx, jetstream.StreamConfig{Name: "S_" + name, Subjects: []string{name + ".>"}})
				errs <- err
			})
			wg.Go(func() {
				<-start
				_, err := c.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: "kv_" + name, History: 2})
				errs <- err
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	// Still the same server: everything created is there, and a changed configuration is an update.
	info, err := conns[0].JS.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("the server is gone: %v", err)
	}
	if info.Streams != 600 {
		t.Fatalf("%d streams, want 600", info.Streams)
	}
	s, err := conns[0].EnsureStream(ctx, jetstream.StreamConfig{Name: "S_round0", Subjects: []string{"round0.>"}, MaxMsgs: 10})
	if err != nil || s.CachedInfo().Config.MaxMsgs != 10 {
		t.Fatalf("update of a changed stream: %v", err)
	}
	kv, err := conns[0].EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: "kv_round0", History: 5})
	if err != nil {
		t.Fatalf("update of a changed bucket: %v", err)
	}
	if st, err := kv.Status(ctx); err != nil || st.History() != 5 {
		t.Fatalf("bucket after update: %v", err)
	}
}
