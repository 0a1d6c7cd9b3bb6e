package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// TestBenchIPAM measures raw global allocations per second, per-host blocks
// against the single subnet key they replaced, with one host allocating and
// with three at once, side by side in one run against one real etcd
// process. Each "host" is a Cluster client of its own in this process, with
// its own node ID (allocations are serialised per host, as in the daemon).
// It skips unless VXNET_BENCH=1; VXNET_BENCH_ALLOC_N sets the allocations
// per host (default 200).
func TestBenchIPAM(t *testing.T) {
	if os.Getenv("VXNET_BENCH") != "1" {
		t.Skip("benchmark: set VXNET_BENCH=1")
	}
	n := 200
	if v, err := strconv.Atoi(os.Getenv("VXNET_BENCH_ALLOC_N")); err == nil && v > 0 {
		n = v
	}
	e := startEtcd(t)
	ctx := context.Background()
	type row struct {
		mode       string
		hosts      int
		wall       time.Duration
		lat        []time.Duration
		errs       int
		firstError string
		lost       int64
	}
	var rows []row
	netNo := 0
	for _, single := range []bool{true, false} {
		mode := "blocks (/26 per host)"
		if single {
			mode = "single subnet key (before)"
		}
		var cs []*Cluster
		for i := range 3 {
			o := externalOpts(t, e, fmt.Sprintf("bench-%v-%d", single, i))
			o.singleKeyIPAM = single
			cs = append(cs, openExternal(t, o))
		}
		for _, hosts := range []int{1, 3} {
			netNo++
			nw := testNet(fmt.Sprintf("bench%d", netNo))
			nw.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", 100+netNo))}}
			if _, err := cs[0].CreateNetworkWithPool(ctx, nw); err != nil {
				t.Fatal(err)
			}
			r := row{mode: mode, hosts: hosts}
			var mu sync.Mutex
			seen := map[netip.Addr]bool{}
			var wg sync.WaitGroup
			start := time.Now()
			for h := range hosts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						t0 := time.Now()
						p, err := cs[h].AllocateAddress(ctx, nw.ID, netip.Addr{})
						d := time.Since(t0)
						mu.Lock()
						if err != nil {
							r.errs++
							if r.firstError == "" {
								r.firstError = err.Error()
							}
						} else {
							if seen[p.Addr()] {
								t.Errorf("%s given out twice", p.Addr())
							}
							seen[p.Addr()] = true
							r.lat = append(r.lat, d)
						}
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			r.wall = time.Since(start)
			for _, c := range cs {
				r.lost += c.casLost.Swap(0)
			}
			rows = append(rows, r)
		}
	}
	fmt.Printf("\n| allocator | hosts allocating | allocations | errors | wall s | total/s | per host/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		slices.Sort(r.lat)
		pct := func(p float64) string {
			if len(r.lat) == 0 {
				return "-"
			}
			return fmt.Sprintf("%.1f", float64(r.lat[int(p*float64(len(r.lat)-1))].Microseconds())/1000)
		}
		ok := float64(len(r.lat))
		fmt.Printf("| %s | %d | %d | %d | %.2f | %.0f | %.0f | %s | %s |\n", r.mode, r.hosts, r.hosts*n, r.errs,
			r.wall.Seconds(), ok/r.wall.Seconds(), ok/r.wall.Seconds()/float64(r.hosts), pct(0.5), pct(0.99))
		fmt.Printf("(%s, %d hosts: %d lost compare-and-swaps)\n", r.mode, r.hosts, r.lost)
		if r.firstError != "" {
			fmt.Printf("first error: %s\n", r.firstError)
		}
	}
}
