package e2e

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/vxnet/vxnet/internal/netns"
)

// TestBenchDNS measures the embedded DNS server from inside a container's
// namespace: queries/s and latency for a local name (answered from the
// index) and for a forwarded name (the upstream is a DNS server in the
// outside namespace), with W concurrent clients, each sending its next
// query when the last is answered. The two loads run interleaved in one
// run (VXNET_BENCH_DNS_ROUNDS rounds of VXNET_BENCH_DNS_SECONDS each).
func TestBenchDNS(t *testing.T) {
	bnGate(t)
	c, h := single(t)
	startTestDNS(t, c.Outside(), c.OutsideAddr().String())
	cli(t, h, "network", "create", "--subnet", "10.87.0.0/24", "bn")
	cli(t, h, "run", "-d", "--name", "q", "--net", "bn", "--dns", c.OutsideAddr().String(), "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "target", "--net", "bn", "busybox", "sleep", "1d")
	sb := bnClient(h).sandbox(t, "q")
	workers := bnEnv(t, "VXNET_BENCH_DNS_WORKERS", 8)
	secs := bnEnv(t, "VXNET_BENCH_DNS_SECONDS", 5)
	rounds := bnEnv(t, "VXNET_BENCH_DNS_ROUNDS", 3)

	run := func(name string) ([]time.Duration, int, time.Duration) {
		var mu sync.Mutex
		var all []time.Duration
		errs := 0
		var wg sync.WaitGroup
		start := time.Now()
		deadline := start.Add(time.Duration(secs) * time.Second)
		for range workers {
			var conn net.Conn
			if err := netns.Do(sb, func() error {
				var err error
				conn, err = net.Dial("udp4", "127.0.0.11:53")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				co := &mdns.Conn{Conn: conn}
				var local []time.Duration
				bad := 0
				q := new(mdns.Msg)
				q.SetQuestion(name, mdns.TypeA)
				for time.Now().Before(deadline) {
					q.Id = mdns.Id()
					st := time.Now()
					conn.SetDeadline(st.Add(5 * time.Second))
					if err := co.WriteMsg(q); err != nil {
						bad++
						continue
					}
					m, err := co.ReadMsg()
					if err != nil || m.Rcode != mdns.RcodeSuccess || len(m.Answer) == 0 {
						bad++
						continue
					}
					local = append(local, time.Since(st))
				}
				mu.Lock()
				all = append(all, local...)
				errs += bad
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all, errs, time.Since(start)
	}
	results := map[string][]time.Duration{}
	elapsed := map[string]time.Duration{}
	failed := map[string]int{}
	for range rounds {
		for _, name := range []string{"target.", "ext.test."} {
			ds, bad, d := run(name)
			results[name] = append(results[name], ds...)
			elapsed[name] += d
			failed[name] += bad
		}
	}
	var rows [][]string
	for _, name := range []string{"target.", "ext.test."} {
		s := bnSummary(results[name])
		kind := "local name (container on the network)"
		if name == "ext.test." {
			kind = "forwarded name (upstream in the outside namespace)"
		}
		rows = append(rows, []string{kind, fmt.Sprintf("%d", s.N), fmt.Sprintf("%d", failed[name]),
			fmt.Sprintf("%.0f", float64(s.N)/elapsed[name].Seconds()), bnMS(s.P50), bnMS(s.P99), bnMS(s.Max)})
	}
	bnPrint(t, fmt.Sprintf("Embedded DNS from a container namespace, %d clients, %d x %d s per kind, interleaved", workers, rounds, secs),
		[]string{"query", "answers", "failed", "queries/s", "p50 ms", "p99 ms", "max ms"}, rows)
}
