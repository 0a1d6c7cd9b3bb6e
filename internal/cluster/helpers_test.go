package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness/freeport"
	"github.com/vxnet/vxnet/internal/model"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// freePorts returns n TCP ports on 127.0.0.1 that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	return freeport.Loopback(t, n)
}

// checkPortsFree fails the test if anything still listens on the ports.
func checkPortsFree(t *testing.T, ports ...int) {
	t.Helper()
	for _, p := range ports {
		var err error
		for range 50 { // a closing server may need a moment
			var l net.Listener
			if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
				l.Close()
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("port %d still in use after cleanup: %v", p, err)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("VXNET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// baseOpts are options with short timeouts for tests.
func baseOpts(t *testing.T, id string) Options {
	var lvl *slog.Level
	if os.Getenv("VXNET_TEST_LOG") != "" {
		l := slog.LevelWarn
		lvl = &l
	}
	return Options{
		EtcdLogLevel:   lvl,
		NodeID:         nid(id),
		Hostname:       "host-" + nid(id),
		AdvertiseAddr:  loopback,
		NodeTTL:        2 * time.Second,
		RequestTimeout: 2 * time.Second,
		StartTimeout:   20 * time.Second,
		Logger:         testLogger(t),
	}
}

// open opens a Cluster and closes it at cleanup.
func open(t *testing.T, o Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Open(ctx, o)
	if err != nil {
		t.Fatalf("open %s: %v", o.NodeID, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond every 100 ms until it returns nil or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func nodeState(ctx context.Context, c *Cluster, id string) (Node, error) {
	ns, err := c.Nodes(ctx)
	if err != nil {
		return Node{}, err
	}
	for _, n := range ns {
		if n.ID == id {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("node %s not listed", id)
}

func wantState(ctx context.Context, c *Cluster, id, state string) func() error {
	return func() error {
		n, err := nodeState(ctx, c, id)
		if err != nil {
			return err
		}
		if n.State != state {
			return fmt.Errorf("node %s is %s, want %s", id, n.State, state)
		}
		return nil
	}
}

func wantUnavailable(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("store call succeeded, want unavailable")
	}
	if !errors.Is(err, model.ErrUnavailable) || !strings.HasPrefix(err.Error(), "cluster store unreachable: ") {
		t.Fatalf("error %q: want an unavailable error starting \"cluster store unreachable: \"", err)
	}
}

// nid and oid turn a test's readable name into a node ID (32 hex digits)
// or a network or endpoint ID (64), as records must carry.
func nid(name string) string { return tid(name, NodeIDLen) }
func oid(name string) string { return tid(name, ObjectIDLen) }

func tid(name string, n int) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])[:n]
}

func testNet(name string) model.Network {
	return model.Network{ID: oid("id-" + name), IPAM: []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.99.0.0/24")}}, VNI: 0, Name: name, Driver: "overlay", Created: time.Now().UTC().Truncate(time.Second)}
}
