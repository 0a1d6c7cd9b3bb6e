package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// simMember is one simulated host: a real Cluster (external store) whose
// advertisement watch feeds a fake kernel, the set of remote endpoints it
// has "programmed", with the time each was first programmed.
type simMember struct {
	c          *Cluster
	mu         sync.Mutex
	programmed map[string]time.Time // endpoint ID -> first programmed
	callbacks  atomic.Int64
	delivered  atomic.Int64 // advertisements handed to the callback, summed
}

// TestBenchControlPlane simulates the control plane of many hosts without
// containers or kernels: N members (goroutines, each a real Cluster with
// its own lease and advertisement watch, its fake kernel diffing the
// advertised set) against one real etcd process. Each member allocates E
// global addresses and advertises them; the benchmark reports
// advertisement -> programmed latency on every other member, etcd writes/s,
// watch deliveries/s, memory per member, then kills a tenth of the members
// and reports how long the others take to drop their entries. It skips
// unless VXNET_BENCH=1; VXNET_SIM_MEMBERS (default 100) and VXNET_SIM_EPS
// (default 10) set the size.
func TestBenchControlPlane(t *testing.T) {
	if os.Getenv("VXNET_BENCH") != "1" {
		t.Skip("benchmark: set VXNET_BENCH=1")
	}
	nm, ne := 100, 10
	if v, err := strconv.Atoi(os.Getenv("VXNET_SIM_MEMBERS")); err == nil && v > 1 {
		nm = v
	}
	if v, err := strconv.Atoi(os.Getenv("VXNET_SIM_EPS")); err == nil && v > 0 {
		ne = v
	}
	e := startEtcd(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ms := make([]*simMember, nm)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range nm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			o := externalOpts(t, e, fmt.Sprintf("sim-%d", i))
			o.NodeTTL = 10 * time.Second
			o.RequestTimeout = 10 * time.Second
			o.AdvertiseAddr = netip.AddrFrom4([4]byte{10, 255, byte(i >> 8), byte(i)})
			ms[i] = &simMember{c: openExternal(t, o), programmed: map[string]time.Time{}}
		}()
	}
	wg.Wait()
	n := testNet("sim")
	n.IPAM = []model.IPAMConfig{{Subnet: netip.MustParsePrefix("10.128.0.0/12")}}
	if _, err := ms[0].c.CreateNetworkWithPool(ctx, n); err != nil {
		t.Fatal(err)
	}
	// The fake kernel: the remote advertisements of the network, diffed
	// against what it holds.
	for _, m := range ms {
		go m.c.WatchAdverts(ctx, n.ID, 0, func(as []Advert, _ int64) {
			now := time.Now()
			m.callbacks.Add(1)
			m.delivered.Add(int64(len(as)))
			want := make(map[string]bool, len(as))
			for _, a := range as {
				if a.NodeID != m.c.NodeID() {
					want[a.EndpointID] = true
				}
			}
			m.mu.Lock()
			for id := range want {
				if _, ok := m.programmed[id]; !ok {
					m.programmed[id] = now
				}
			}
			for id := range m.programmed {
				if !want[id] {
					delete(m.programmed, id)
				}
			}
			m.mu.Unlock()
		})
	}
	time.Sleep(time.Second)
	var idle runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&idle)

	// Publish: every member allocates and advertises its endpoints.
	var sentMu sync.Mutex
	sent := map[string]time.Time{}
	owner := map[string]int{}
	var writes, failed atomic.Int64
	start := time.Now()
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ne {
				ep := oid(fmt.Sprintf("sim-%d-%d", i, j))
				p, err := m.c.AllocateAddressFor(ctx, n.ID, netip.Addr{}, ep)
				if err != nil {
					failed.Add(1)
					t.Logf("member %d: %v", i, err)
					return
				}
				writes.Add(1)
				a := Advert{NetworkID: n.ID, EndpointID: ep, IP: p.Addr(), MAC: model.MACForIP(p.Addr()), Name: fmt.Sprintf("c%d-%d", i, j)}
				t0 := time.Now()
				if err := m.c.Advertise(ctx, a); err != nil {
					failed.Add(1)
					t.Logf("member %d: advertise: %v", i, err)
					return
				}
				writes.Add(1)
				sentMu.Lock()
				sent[ep], owner[ep] = t0, i
				sentMu.Unlock()
			}
		}()
	}
	wg.Wait()
	publish := time.Since(start)
	total := nm * ne
	deadline := time.Now().Add(time.Minute)
	converged := false
	for time.Now().Before(deadline) {
		ok := true
		for _, m := range ms {
			m.mu.Lock()
			k := len(m.programmed)
			m.mu.Unlock()
			if k != total-ne {
				ok = false
				break
			}
		}
		if ok {
			converged = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	conv := time.Since(start)
	var lat []time.Duration
	var cbs, del int64
	for i, m := range ms {
		m.mu.Lock()
		for ep, at := range m.programmed {
			if t0, ok := sent[ep]; ok && owner[ep] != i {
				lat = append(lat, at.Sub(t0))
			}
		}
		m.mu.Unlock()
		cbs += m.callbacks.Load()
		del += m.delivered.Load()
	}
	var busy runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&busy)

	// Deaths: a tenth of the members stop without leaving.
	dead := max(1, nm/10)
	killed := time.Now()
	for _, m := range ms[nm-dead:] {
		m.c.Close()
	}
	purged := false
	for time.Now().Before(killed.Add(time.Minute)) {
		ok := true
		for _, m := range ms[:nm-dead] {
			m.mu.Lock()
			k := len(m.programmed)
			m.mu.Unlock()
			if k != total-ne-dead*ne {
				ok = false
				break
			}
		}
		if ok {
			purged = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	purge := time.Since(killed)

	slices.Sort(lat)
	pct := func(p float64) string {
		if len(lat) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(lat[int(p*float64(len(lat)-1))].Microseconds())/1000)
	}
	mib := func(b uint64) float64 { return float64(b) / (1 << 20) }
	fmt.Printf("\n%d store calls failed during the publish (members stop publishing at their first failure)\n", failed.Load())
	fmt.Printf("\n| members x endpoints | converged | publish s | all programmed s | adv->programmed p50 ms | p99 ms | etcd writes/s (publish) | watch callbacks | adverts delivered to callbacks | deliveries/s | heap KiB/member idle | heap KiB/member loaded | %d dead: purged everywhere s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", dead)
	fmt.Printf("| %d x %d | %v | %.1f | %.1f | %s | %s | %.0f | %d | %d | %.0f | %.0f | %.0f | %.1f (%v) |\n",
		nm, ne, converged, publish.Seconds(), conv.Seconds(), pct(0.5), pct(0.99),
		float64(writes.Load())/publish.Seconds(), cbs, del, float64(del)/conv.Seconds(),
		(mib(idle.HeapAlloc)-mib(before.HeapAlloc))*1024/float64(nm), (mib(busy.HeapAlloc)-mib(before.HeapAlloc))*1024/float64(nm),
		purge.Seconds(), purged)
}
