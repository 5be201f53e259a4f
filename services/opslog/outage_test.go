package opslog

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	opslogv1 "github.com/sluicehq/sluice/api/sluice/opslog/v1"
	"github.com/sluicehq/sluice/platform/checkfor"
	"github.com/sluicehq/sluice/platform/opsevents"
	"github.com/sluicehq/sluice/platform/warehouse"
	"github.com/sluicehq/sluice/platform/warehouse/warehousetest"
)

// proxy forwards TCP connections to a ClickHouse server; down() cuts every connection and
// refuses new ones, which is what the ops log sees when the server is unreachable.
type proxy struct {
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *proxy) forward(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		_ = c.Close()
		_ = s.Close()
		return
	}
	p.conns[c], p.conns[s] = true, true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
	_, _ = io.Copy(c, s)
	_ = c.Close()
}

func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *proxy) up(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			p.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
}

// TestClickHouseOutageNative: a real clickhouse-server becomes unreachable while events are
// published (some in a batch being written when the connection is cut); the events wait in
// the stream and are all written, once, when the server is reachable again.
func TestClickHouseOutageNative(t *testing.T) {
	cfg := warehousetest.Server(t)
	px := startProxy(t, cfg.Addrs[0])
	cfg.Addrs = []string{px.addr}
	cfg.ReadTimeout = 5 * time.Second
	ctx := context.Background()
	wh, err := warehouse.OpenNative(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Close() })
	db := warehousetest.NewDatabase(t, warehousetest.Native(t))
	nc := startNATS(t)
	s := startService(t, testConfig(), nc, wh, db, hooks{})
	pub := opsevents.NewPublisher(nc, nil)
	ev := func(i int) *opslogv1.OpsEvent { return testEvent("acme", fmt.Sprintf("ds%d", i%4), i) }

	for i := range 100 {
		publish(t, pub, ev(i))
	}
	waitWritten(t, s, wh, 100)

	px.down()
	for i := 100; i < 3100; i++ {
		publish(t, pub, ev(i))
	}
	// Nothing can be written; everything is held by the stream.
	checkfor.State(t, 30*time.Second, "the writer to hold the events", func() (bool, string) {
		info := consumerInfo(t, s)
		return info.NumAckPending > 0, fmt.Sprintf("pending=%d ack_pending=%d", info.NumPending, info.NumAckPending)
	})
	checkfor.State(t, 30*time.Second, "failed write attempts", func() (bool, string) {
		n := testutil.ToFloat64(s.metrics.writeErrors)
		return n >= 4, fmt.Sprint(n)
	})
	direct := warehousetest.Native(t)
	if rows, _ := counts(t, direct, db); rows != 100 {
		t.Fatalf("%d rows during the outage, want 100", rows)
	}
	px.up(t)
	waitWritten(t, s, direct, 3100)
}
