package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/leakcheck"
)

// TestBenchRuntimes: run -d (create + start over the API) and run --rm echo
// (the vxnet CLI) on two hosts side by side, interleaved: h0 with the old
// runc path (--runtime runc, vxnet's own shim), h1 with containerd (the
// harness's shared containerd); then RSS of the shims per container.
func TestBenchRuntimes(t *testing.T) {
	bnGate(t)
	n := bnEnv(t, "VXNET_BENCH_RUNTIME_N", 30)
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: func(i int, _ *harness.Host) []string {
		if i == 0 {
			return append([]string{"--runtime", "runc"}, bnDaemonArgs...)
		}
		return bnDaemonArgs
	}})
	hosts := []*harness.Host{c.Host(0), c.Host(1)}
	names := []string{"runc (vxnet shim)", "containerd"}
	runD := make([][]time.Duration, 2)
	runRm := make([][]time.Duration, 2)
	for _, h := range hosts {
		h.Start()
	}
	for i := 0; i < n; i++ {
		for k, h := range hosts {
			api := bnClient(h)
			t0 := time.Now()
			if _, err := api.run(fmt.Sprintf("c%d", i), "bridge", netip.Addr{}); err != nil {
				t.Fatalf("%s: run -d: %v", names[k], err)
			}
			runD[k] = append(runD[k], time.Since(t0))
			t0 = time.Now()
			if out := cli(t, h, "run", "--rm", "busybox", "echo", "hi"); out != "hi" {
				t.Fatalf("%s: run --rm echo: %q", names[k], out)
			}
			runRm[k] = append(runRm[k], time.Since(t0))
		}
	}
	var rows [][]string
	for k := range hosts {
		rows = append(rows, bnLatencyRow("run -d, "+names[k], runD[k]))
	}
	for k := range hosts {
		rows = append(rows, bnLatencyRow("run --rm echo, "+names[k], runRm[k]))
	}
	bnPrint(t, fmt.Sprintf("run latency by runtime (%d each, interleaved)", n), bnLatencyHeader, rows)

	// Memory with n containers running on each host: the shims, the
	// daemon, and (containerd path) the containerd shared by the hosts.
	shims0 := rssOf(t, func(cmd string) bool {
		return strings.Contains(cmd, " shim ") && strings.Contains(cmd, hosts[0].DataRoot)
	})
	shims1 := rssOf(t, func(cmd string) bool {
		return strings.Contains(cmd, "containerd-shim-runc-v2") && strings.Contains(cmd, "-namespace "+filepath.Base(hosts[1].Netns))
	})
	ctrd := rssOf(t, func(cmd string) bool {
		return strings.Contains(cmd, "containerd --config") && strings.Contains(cmd, leakcheck.Marker())
	})
	bnPrint(t, fmt.Sprintf("RSS with %d containers running per host (MiB)", n), []string{"what", "runc (vxnet shim)", "containerd"},
		[][]string{
			{"shims, total", fmt.Sprintf("%.1f", shims0), fmt.Sprintf("%.1f", shims1)},
			{"per container", fmt.Sprintf("%.1f", shims0/float64(n)), fmt.Sprintf("%.1f", shims1/float64(n))},
			{"daemon", fmt.Sprintf("%.1f", bnRSS(t, hosts[0])), fmt.Sprintf("%.1f", bnRSS(t, hosts[1]))},
			{"containerd (shared)", "-", fmt.Sprintf("%.1f", ctrd)},
		})

	// Containers started per second: m more `run -d` on one host at a time,
	// par at once (as a client starting a batch does), the runtimes one
	// after the other in the same run.
	m := bnEnv(t, "VXNET_BENCH_RUNTIME_STARTS", 20)
	par := bnEnv(t, "VXNET_BENCH_RUNTIME_PAR", 4)
	var rate [][]string
	for k, h := range hosts {
		api := bnClient(h)
		next := make(chan int, m)
		for i := 0; i < m; i++ {
			next <- i
		}
		close(next)
		errs := make(chan error, m)
		var wg sync.WaitGroup
		t0 := time.Now()
		for g := 0; g < par; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if _, err := api.run(fmt.Sprintf("s%d", i), "bridge", netip.Addr{}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		wall := time.Since(t0)
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("%s: run -d: %v", names[k], err)
		}
		rate = append(rate, []string{names[k], fmt.Sprint(m), fmt.Sprint(par), fmt.Sprintf("%.2f", wall.Seconds()), fmt.Sprintf("%.1f", float64(m)/wall.Seconds())})
	}
	bnPrint(t, "containers started per second (run -d, batches at once)", []string{"runtime", "containers", "at once", "wall s", "containers/s"}, rate)
}

// rssOf sums the VmRSS (MiB) of the processes whose command line matches.
func rssOf(t *testing.T, match func(cmd string) bool) float64 {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	var total float64
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !match(strings.ReplaceAll(string(b), "\x00", " ")) {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(st), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.Atoi(f[1])
				total += float64(kb) / 1024
			}
		}
	}
	return total
}
