package e2e

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBenchReadLatency: latency of reads (ps, network ls, inspect, network
// inspect, round robin, at the API) on an idle host, while etcd is frozen
// (SIGSTOP) with an overlay run waiting on it, and while 20 `rm -f` of
// overlay containers are in flight, side by side in one run.
func TestBenchReadLatency(t *testing.T) {
	bnGate(t)
	const n = 20
	_, et, api := locksSetup(t, n, bnDaemonArgs...)
	if _, err := api.run("keep", "ov", netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/containers/json?all=1", "/networks", "/containers/keep/json", "/networks/ov"}
	read := func(i int) time.Duration {
		t0 := time.Now()
		if _, err := api.do("GET", paths[i%len(paths)], nil, nil); err != nil {
			t.Errorf("read: %v", err)
		}
		return time.Since(t0)
	}
	// readWhile reads until busy() turns false (at least min reads, at
	// most max).
	readWhile := func(busy func() bool, lo, hi int) []time.Duration {
		var ds []time.Duration
		for i := 0; i < hi && (i < lo || busy()); i++ {
			ds = append(ds, read(i))
		}
		return ds
	}

	idle := readWhile(func() bool { return false }, 400, 400)

	et.freeze(true)
	var runDone atomic.Bool
	go func() {
		api.run("blocked", "ov", netip.Addr{})
		runDone.Store(true)
	}()
	time.Sleep(100 * time.Millisecond)
	frozen := readWhile(func() bool { return !runDone.Load() }, 1, 100000)
	et.freeze(false)
	for !runDone.Load() {
		time.Sleep(50 * time.Millisecond)
	}
	api.rm("blocked")

	var left atomic.Int32
	left.Store(n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := api.rm(fmt.Sprintf("c%d", i)); err != nil {
				t.Errorf("rm: %v", err)
			}
			left.Add(-1)
		}()
	}
	removing := readWhile(func() bool { return left.Load() > 0 }, 1, 100000)
	wg.Wait()
	rmTook := time.Since(start)

	bnPrint(t, "Read latency (ps, network ls, inspect, network inspect at the API)", bnLatencyHeader, [][]string{
		bnLatencyRow("idle", idle),
		bnLatencyRow("etcd frozen, overlay run waiting", frozen),
		bnLatencyRow(fmt.Sprintf("20 rm -f in flight (all done in %s)", rmTook.Round(time.Millisecond)), removing),
	})
}
