package e2e

import (
	"fmt"
	"net/netip"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// freeze stops (SIGSTOP) or resumes (SIGCONT) the external etcd: the store
// keeps its connections but answers nothing, a brown-out rather than an
// outage.
func (e *extEtcd) freeze(stop bool) {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if e.cmd != nil {
		syscall.Kill(-e.cmd.Process.Pid, sig)
	}
}

// locksSetup is one host on an external etcd with an overlay network and
// n running containers on it.
func locksSetup(t *testing.T, n int, daemonArgs ...string) (*harness.Host, *extEtcd, *bnAPI) {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		testreq.Skip(t, "needs etcd (Debian's etcd-server)")
	}
	var store string
	var et *extEtcd
	c := harness.New(t, harness.Options{Hosts: 1, DaemonArgs: func(i int, h *harness.Host) []string {
		args := append([]string{"--cluster-store", store, "--advertise-addr", h.Addr.String()}, et.tls.daemonArgs()...)
		return append(args, daemonArgs...)
	}})
	h := c.Host(0)
	store = "etcd://" + h.Addr.String() + ":2379"
	et = newExtEtcd(t, h, c.Dir)
	et.start()
	t.Cleanup(et.kill)
	t.Cleanup(func() { et.freeze(false) })
	h.Start()
	api := bnClient(h)
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.77.0.0/24", "ov")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := api.run(fmt.Sprintf("c%d", i), "ov", netip.Addr{}); err != nil {
				errs <- err
			}
		}()
		if i%4 == 3 {
			wg.Wait() // a few at a time: the machine is shared
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return h, et, api
}

// Reads never wait for the store or the runtime: with etcd frozen
// (SIGSTOP) and an overlay run waiting on it, then with 20 `rm -f` in
// flight (each withdrawing and releasing in the frozen store), ps, network
// ls, inspect and network inspect answer while the blocked operations have
// not returned. Before the engine lock was split, every read waited behind
// them.
func TestReadsDuringFrozenStore(t *testing.T) {
	const n = 20
	h, et, api := locksSetup(t, n)
	reads := []struct{ what, path string }{
		{"ps", "/containers/json?all=1"},
		{"network ls", "/networks"},
		{"inspect", "/containers/c0/json"},
		{"network inspect", "/networks/ov"},
	}
	check := func(phase string, pending func() bool) {
		t.Helper()
		for _, r := range reads {
			if _, err := api.do("GET", r.path, nil, nil); err != nil {
				t.Errorf("%s: %s: %v", phase, r.what, err)
			}
			if !pending() {
				t.Errorf("%s: %s answered only after the blocked operations returned", phase, r.what)
			}
		}
	}

	// An overlay run waits on the frozen store (address allocation).
	et.freeze(true)
	var runDone atomic.Bool
	runErr := make(chan error, 1)
	go func() {
		_, err := api.run("blocked", "ov", netip.Addr{})
		runDone.Store(true)
		runErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let it reach the store
	check("store frozen, overlay run waiting", func() bool { return !runDone.Load() })
	et.freeze(false)
	select {
	case err := <-runErr:
		t.Logf("the run blocked on the frozen store returned: %v", err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the run blocked on the frozen store never returned")
	}

	// 20 rm -f in flight, each blocked withdrawing its advertisement.
	et.freeze(true)
	var left atomic.Int32
	left.Store(n)
	var wg sync.WaitGroup
	rmErrs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := api.rm(fmt.Sprintf("c%d", i)); err != nil {
				rmErrs <- err
			}
			left.Add(-1)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	check("store frozen, 20 rm -f in flight", func() bool { return left.Load() == n })
	et.freeze(false)
	wg.Wait()
	close(rmErrs)
	for err := range rmErrs {
		t.Errorf("rm -f: %v", err)
	}
	var ps []struct{ Names []string }
	api.must(t, "GET", "/containers/json?all=1", nil, &ps)
	for _, c := range ps {
		if len(c.Names) > 0 && c.Names[0] != "/blocked" {
			t.Errorf("container %v left after rm -f", c.Names)
		}
	}
	_ = h
}
