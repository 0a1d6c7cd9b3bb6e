package e2e

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// TestBenchTLS puts the cost of the embedded cluster's security (mutual
// TLS on every etcd link, etcd authentication) side by side with a
// plaintext build of the same code (go build -tags vxnet_bench_plaintext,
// which only this benchmark makes; no flag reaches it). Rounds alternate
// the two builds, each on a fresh 2-host cluster: join time, `network
// create` latency, and advertisement -> kernel entries on the peer.
func TestBenchTLS(t *testing.T) {
	bnGate(t)
	rounds := bnEnv(t, "VXNET_BENCH_TLS_ROUNDS", 3)
	nCreate := bnEnv(t, "VXNET_BENCH_TLS_CREATE_N", 20)
	nAdv := bnEnv(t, "VXNET_BENCH_TLS_ADV_N", 20)
	bins := map[string]string{"TLS": harness.Build(t), "plaintext": harness.BuildTagged(t, "vxnet_bench_plaintext")}
	type result struct{ join, create, adv []time.Duration }
	res := map[string]*result{"TLS": {}, "plaintext": {}}
	for r := 0; r < rounds; r++ {
		order := []string{"TLS", "plaintext"}
		if r%2 == 1 {
			order = []string{"plaintext", "TLS"}
		}
		for _, mode := range order {
			t.Run(fmt.Sprintf("%s-%d", mode, r), func(t *testing.T) {
				out := res[mode]
				c := harness.New(t, harness.Options{Hosts: 2, Binary: bins[mode], DaemonArgs: func(i int, h *harness.Host) []string {
					args := append([]string{}, bnDaemonArgs...)
					args = append(args, "--advertise-addr", h.Addr.String())
					if i == 0 {
						args = append(args, "--cluster-init")
					}
					return args
				}})
				A, B := c.Host(0), c.Host(1)
				A.Start()
				apiA, apiB := bnClient(A), bnClient(B)
				// Join: daemon start -> both nodes up in host 0's list.
				join := B.JoinArgs(0)
				t0 := time.Now()
				B.Start(join...)
				if !bnPoll(30*time.Second, 5*time.Millisecond, func() bool {
					var nodes []struct{ State string }
					if _, err := apiA.do("GET", "/vxnet/nodes", nil, &nodes); err != nil || len(nodes) != 2 {
						return false
					}
					return nodes[0].State == "up" && nodes[1].State == "up"
				}) {
					t.Fatal("host 1 not up in host 0's node list after 30 s")
				}
				out.join = append(out.join, time.Since(t0))

				// network create (API latency on host 0).
				for i := 0; i < nCreate; i++ {
					name := fmt.Sprintf("bnc%d", i)
					s := time.Now()
					if _, err := apiA.do("POST", "/networks/create", map[string]any{"Name": name, "Driver": "overlay"}, nil); err != nil {
						t.Fatal(err)
					}
					out.create = append(out.create, time.Since(s))
					apiA.must(t, "DELETE", "/networks/"+name, nil, nil)
				}

				// Advertisement on A seen by an etcd watcher -> FDB and
				// neighbour entries on B.
				apiA.createOverlay(t, "bntls", "10.231.0.0/16")
				if !bnPoll(15*time.Second, 10*time.Millisecond, func() bool { code, _ := apiB.do("GET", "/networks/bntls", nil, nil); return code == 200 }) {
					t.Fatal("bntls not visible on B")
				}
				if _, err := apiB.run("probe", "bntls", netip.MustParseAddr("10.231.0.20")); err != nil {
					t.Fatal(err)
				}
				kB := bnOpenKernel(t, apiB.overlayNS(t, "bntls"))
				watch := bnWatchAdverts(bnStartWorker(t, c, A, append(bnEtcdEnv(t, c, A, mode == "plaintext"), "VXNET_BN_WORKER=watch")...))
				for i := 0; i < nAdv; i++ {
					ip := netip.AddrFrom4([4]byte{10, 231, 1, byte(10 + i)})
					mac := bnMAC(ip)
					name := fmt.Sprintf("x%d", i)
					// Poll B's kernel from before the run: the advertisement
					// is published before run returns.
					var tBoth time.Time
					polled := make(chan struct{})
					go func() {
						defer close(polled)
						bnPoll(20*time.Second, time.Millisecond, func() bool {
							f, _, err1 := kB.fdb()
							n, err2 := kB.neigh()
							if err1 == nil && err2 == nil && f[mac] && n[ip.String()] {
								tBoth = time.Now()
								return true
							}
							return false
						})
					}()
					if _, err := apiA.run(name, "bntls", ip); err != nil {
						t.Fatal(err)
					}
					<-polled
					if tBoth.IsZero() {
						t.Fatalf("%s on A not in B's kernel after 20 s", ip)
					}
					if tAdv, ok := watch.get(ip.String(), 2*time.Second); ok {
						out.adv = append(out.adv, tBoth.Sub(tAdv))
					}
					if err := apiA.rm(name); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
	row := func(what string, f func(*result) []time.Duration) []string {
		tl, pl := bnSummary(f(res["TLS"])), bnSummary(f(res["plaintext"]))
		return []string{what, fmt.Sprint(tl.N), bnMS(tl.P50), bnMS(pl.P50), bnRatio(tl.P50, pl.P50), bnMS(tl.P99), bnMS(pl.P99), bnMS(tl.Mean), bnMS(pl.Mean), bnRatio(tl.Mean, pl.Mean)}
	}
	bnPrint(t, fmt.Sprintf("Embedded cluster security: mutual TLS + etcd auth vs a plaintext build, 2 hosts, %d interleaved round(s) per build", rounds),
		[]string{"what", "n per build", "TLS p50 ms", "plain p50 ms", "p50 TLS/plain", "TLS p99 ms", "plain p99 ms", "TLS mean ms", "plain mean ms", "mean TLS/plain"},
		[][]string{
			row("join: daemon start on B -> both nodes up on A (token, CSR, learner, promotion)", func(r *result) []time.Duration { return r.join }),
			row("network create -d overlay on A (API latency)", func(r *result) []time.Duration { return r.create }),
			row("advertisement seen by an etcd watcher -> FDB + neighbour entries on B", func(r *result) []time.Duration { return r.adv }),
		})
}
