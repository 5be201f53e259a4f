package sluicetest

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// balancer is what a Kubernetes Service is to its pods: one address in front of several
// replicas, each new connection sent to the next replica that accepts it. Connections to a
// replica that dies break, and the client's reconnection goes to another.
type balancer struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	conns    map[net.Conn]bool
	closed   bool
}

func startBalancer(t testing.TB, listen string, backends []string) *balancer {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("balancer: %v", err)
	}
	b := &balancer{ln: ln, backends: backends, conns: map[net.Conn]bool{}}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

func (b *balancer) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.forward(c)
	}
}

func (b *balancer) forward(c net.Conn) {
	b.mu.Lock()
	start := b.next
	b.next++
	backends := b.backends
	b.mu.Unlock()
	var up net.Conn
	for i := range backends {
		conn, err := net.DialTimeout("tcp", backends[(start+i)%len(backends)], 2*time.Second)
		if err == nil {
			up = conn
			break
		}
	}
	if up == nil || !b.track(c, up) {
		_ = c.Close()
		if up != nil {
			_ = up.Close()
		}
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	b.mu.Lock()
	delete(b.conns, c)
	delete(b.conns, up)
	b.mu.Unlock()
}

func (b *balancer) track(conns ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	for _, c := range conns {
		b.conns[c] = true
	}
	return true
}

func (b *balancer) close() {
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	_ = b.ln.Close()
}
