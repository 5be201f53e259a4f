package natsx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// cluster runs n nats-servers with JetStream in this process, routed to each other on free
// loopback ports, and returns their client URLs.
func cluster(t *testing.T, n int) []string {
	t.Helper()
	free := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	var routes string
	ports := make([]int, n)
	for i := range n {
		ports[i] = free()
		routes += fmt.Sprintf(",nats://127.0.0.1:%d", ports[i])
	}
	var urls []string
	for i := range n {
		o := &server.Options{ServerName: fmt.Sprintf("s%d", i), Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: ports[i]}, Routes: server.RoutesFromStr(routes[1:])}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	return urls
}

// TestIsConflictOnReplicatedBucket: on a bucket with 3 replicas, compare-and-set updates from
// several clients at once conflict in two ways: code 10071, which jetstream.ErrKeyExists
// matches, and code 10164 (a conflict with a write still being replicated), which it does not.
// A compare-and-set loop that retries on IsConflict applies every update exactly once; one
// that retried on ErrKeyExists only would fail on the second kind.
func TestIsConflictOnReplicatedBucket(t *testing.T) {
	urls := cluster(t, 3)
	ctx := context.Background()
	var kvs []jetstream.KeyValue
	for i := range 4 {
		nc, err := nats.Connect(urls[i%len(urls)])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		c := &Conn{NC: nc, Replicas: 3}
		if c.JS, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		kv, err := c.EnsureKV(ctx, jetstream.KeyValueConfig{Bucket: "conflicts"})
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, kv)
	}
	if _, err := kvs[0].Create(ctx, "n", []byte("0")); err != nil {
		t.Fatal(err)
	}
	const each = 50
	var mu sync.Mutex
	kinds := map[string]int{}
	var wg sync.WaitGroup
	for _, kv := range kvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					e, err := kv.Get(ctx, "n")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := strconv.Atoi(string(e.Value()))
					_, err = kv.Update(ctx, "n", []byte(strconv.Itoa(n+1)), e.Revision())
					if err == nil {
						break
					}
					if !IsConflict(err) {
						t.Errorf("update: %v", err)
						return
					}
					mu.Lock()
					if errors.Is(err, jetstream.ErrKeyExists) {
						kinds["ErrKeyExists"]++
					} else {
						kinds["other code"]++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	e, err := kvs[0].Get(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(string(e.Value())); n != each*len(kvs) {
		t.Fatalf("after %d compare-and-set increments the value is %d", each*len(kvs), n)
	}
	t.Logf("conflicts: %v", kinds)
	if _, err := kvs[0].Create(ctx, "n", []byte("x")); !IsConflict(err) {
		t.Fatalf("create of an existing key: %v", err)
	}
	if IsConflict(errors.New("nats: timeout")) || IsConflict(nil) {
		t.Fatal("IsConflict matches other errors")
	}
}
