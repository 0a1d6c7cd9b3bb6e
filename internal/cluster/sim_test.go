package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// The control-plane simulation: N members (goroutines, each a real Cluster
// with its own etcd client, lease, node record, global allocations,
// advertisements, advertisement watch and owner watch) against one real etcd
// process, with a fake kernel per member instead of containers. Each member
// takes part in one overlay network of netSize members and has E endpoints
// there. The fake kernel is the engine's peer controller without netlink:
// every set the watch delivers is checked with CheckAdverts (subnet,
// registered VTEP, owner records) and diffed against what it holds.

// simMember is one simulated host.
type simMember struct {
	c          *Cluster
	n          model.Network
	mu         sync.Mutex
	programmed map[string]time.Time // remote endpoint ID -> first programmed
	callbacks  atomic.Int64
	delivered  atomic.Int64 // advertisements handed to the callback, summed
}

type simConfig struct {
	members, eps, netSize int
	ttl                   time.Duration // node TTL (each member rewrites its node record once per TTL)
	churn                 bool          // a tenth of the members replace an endpoint
	wait                  time.Duration
	// gap is the least time between two deliveries of the set to a
	// member (Options.advertGap; 0: at once); kaTimeout the members' gRPC
	// keepalive timeout (Options.keepAliveTimeout; 0: 2 s).
	gap, kaTimeout time.Duration
	// rate paces the publish: endpoints per second across all members
	// (0: every member publishes as fast as the store answers).
	rate float64
	// etcd is the store: "" Debian's etcd, else etcdProcess.embedded.
	etcd string
}

type simResult struct {
	cfg                           simConfig
	nets                          int
	opened, publish, conv         time.Duration
	converged, churned, purged    bool
	churnConv, purge              time.Duration
	lat, churnLat                 []time.Duration
	worstMemberP99                time.Duration
	writes, failed, pubWrites     int64
	advWrites                     int64 // advertisement puts and deletes made
	events, bytes, applied, loads int64
	ownerReads                    int64
	callbacks, delivered          int64
	heapIdle, heapLoaded          float64 // KiB per member
	blockEvents, nodeEvents       int64   // events of the owner (block) and node watches
	etcdCPU, procCPU              float64 // CPU seconds during the publish: etcd, the members
	etcdRSS                       float64 // MiB after the publish
	dead                          int
}

// runSim runs one simulation and returns what it measured.
func runSim(t *testing.T, cfg simConfig) simResult {
	e := startEtcdAs(t, cfg.etcd)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := simResult{cfg: cfg}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	t0 := time.Now()
	ms := make([]*simMember, cfg.members)
	var wg sync.WaitGroup
	// Members join four at a time (hosts join a cluster over time, not
	// all at once); a join the store does not answer is tried again for
	// up to three minutes.
	sem := make(chan struct{}, 4)
	var joined atomic.Int64
	for i := range cfg.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			o := externalOpts(t, e, fmt.Sprintf("sim-%d", i))
			o.NodeTTL = cfg.ttl
			o.RequestTimeout = 20 * time.Second
			o.advertGap, o.keepAliveTimeout = cfg.gap, cfg.kaTimeout
			o.AdvertiseAddr = netip.AddrFrom4([4]byte{10, 255, byte(i >> 8), byte(i)})
			deadline := time.Now().Add(3 * time.Minute)
			for {
				c, err := Open(context.Background(), o)
				if err == nil {
					t.Cleanup(func() { c.Close() })
					ms[i] = &simMember{c: c, programmed: map[string]time.Time{}}
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("member %d: open: %v", i, err)
					return
				}
				time.Sleep(time.Second)
			}
			if k := joined.Add(1); k%100 == 0 {
				t.Logf("%d members open after %.1f s", k, time.Since(t0).Seconds())
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	r.opened = time.Since(t0)
	// The networks: one per netSize members, a /20 each.
	r.nets = (cfg.members + cfg.netSize - 1) / cfg.netSize
	nets := make([]model.Network, r.nets)
	for k := range nets {
		n := testNet(fmt.Sprintf("sim%d", k))
		n.IPAM = []model.IPAMConfig{{Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(128 + k/16), byte(k%16) << 4, 0}), 20)}}
		created, err := ms[0].c.CreateNetworkWithPool(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		nets[k] = created
	}
	for i, m := range ms {
		m.n = nets[i/cfg.netSize]
		go m.c.FollowOwners(ctx, m.n.ID)
		go m.c.WatchAdverts(ctx, m.n.ID, 0, func(as []Advert, _ int64) {
			kept := m.c.CheckAdverts(ctx, m.n, as)
			now := time.Now()
			m.callbacks.Add(1)
			m.delivered.Add(int64(len(as)))
			want := make(map[string]bool, len(kept))
			for _, a := range kept {
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
	type sentEP struct {
		at     time.Time
		member int
	}
	var sentMu sync.Mutex
	sent := map[string]sentEP{}
	live := make([]int, len(ms)) // endpoints each member advertises now (under sentMu)
	var writes, failed, advWrites atomic.Int64
	var logged atomic.Int64
	logFail := func(format string, args ...any) {
		failed.Add(1)
		if logged.Add(1) <= 10 {
			t.Logf(format, args...)
		}
	}
	// publishEP allocates and advertises one endpoint, as the engine does
	// for a container start; a failed allocation is tried again (up to
	// three times, as a user or orchestrator would start the container
	// again), a failed advertisement is left to the Cluster, which
	// publishes it once the store answers.
	publishEP := func(i int, ep string) bool {
		m := ms[i]
		var p netip.Prefix
		var err error
		for try := 0; try < 3; try++ {
			if p, err = m.c.AllocateAddressFor(ctx, m.n.ID, netip.Addr{}, ep); err == nil {
				break
			}
			logFail("member %d: %v", i, err)
			time.Sleep(time.Second)
		}
		if err != nil {
			return false
		}
		writes.Add(1)
		a := Advert{NetworkID: m.n.ID, EndpointID: ep, IP: p.Addr(), MAC: model.MACForIP(p.Addr()), Name: "c" + ep[:8]}
		at := time.Now()
		advWrites.Add(1)
		err = m.c.Advertise(ctx, a)
		sentMu.Lock()
		sent[ep] = sentEP{at, i}
		live[i]++
		sentMu.Unlock()
		if err != nil {
			logFail("member %d: advertise: %v", i, err)
			return true
		}
		writes.Add(1)
		return true
	}
	t.Logf("%d members open after %.1f s; publishing", len(ms), r.opened.Seconds())
	start := time.Now()
	etcdCPU0, procCPU0 := procCPUSeconds(e.cmd.Process.Pid), procCPUSeconds(os.Getpid())
	for i := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range cfg.eps {
				if cfg.rate > 0 { // endpoint j of member i at its turn
					at := start.Add(time.Duration(float64(j*len(ms)+i) / cfg.rate * float64(time.Second)))
					time.Sleep(time.Until(at))
				}
				publishEP(i, oid(fmt.Sprintf("sim-%d-%d", i, j)))
			}
		}()
	}
	wg.Wait()
	r.publish = time.Since(start)
	r.pubWrites = writes.Load()
	r.etcdCPU = procCPUSeconds(e.cmd.Process.Pid) - etcdCPU0
	r.procCPU = procCPUSeconds(os.Getpid()) - procCPU0
	r.etcdRSS = procRSSMiB(e.cmd.Process.Pid)
	// dead marks the members stopped in the last phase.
	dead := make([]bool, len(ms))
	// wants returns, for each member alive, the number of remote
	// endpoints it must hold: what the live peers of its network
	// advertise (a member whose store call failed stopped publishing).
	wants := func() []int {
		sentMu.Lock()
		defer sentMu.Unlock()
		perNet := map[string]int{}
		for p, m := range ms {
			if !dead[p] {
				perNet[m.n.ID] += live[p]
			}
		}
		out := make([]int, len(ms))
		for i, m := range ms {
			out[i] = perNet[m.n.ID] - live[i]
		}
		return out
	}
	waitAll := func(d time.Duration) (bool, time.Duration) {
		began := time.Now()
		for time.Since(began) < d {
			ok := true
			want := wants()
			for i, m := range ms {
				if dead[i] {
					continue
				}
				m.mu.Lock()
				k := len(m.programmed)
				m.mu.Unlock()
				if k != want[i] {
					ok = false
					break
				}
			}
			if ok {
				return true, time.Since(began)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return false, time.Since(began)
	}
	t.Logf("published in %.1f s; waiting for every member", r.publish.Seconds())
	r.converged, _ = waitAll(cfg.wait)
	r.conv = time.Since(start)
	t.Logf("converged %v after %.1f s", r.converged, r.conv.Seconds())
	latencies := func(eps map[string]sentEP) (all []time.Duration, worst time.Duration) {
		for i, m := range ms {
			var mine []time.Duration
			m.mu.Lock()
			for ep, at := range m.programmed {
				if s, ok := eps[ep]; ok && s.member != i {
					mine = append(mine, at.Sub(s.at))
				}
			}
			m.mu.Unlock()
			slices.Sort(mine)
			if len(mine) > 0 {
				worst = max(worst, mine[int(0.99*float64(len(mine)-1))])
			}
			all = append(all, mine...)
		}
		slices.Sort(all)
		return all, worst
	}
	r.lat, r.worstMemberP99 = latencies(sent)
	var busy runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&busy)

	// Churn: a tenth of the members replace one endpoint each (withdraw
	// and release, then a new address and advertisement).
	if cfg.churn {
		churned := map[string]sentEP{}
		start := time.Now()
		for i := 0; i < len(ms); i += 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m := ms[i]
				old := oid(fmt.Sprintf("sim-%d-0", i))
				sentMu.Lock()
				_, had := sent[old]
				sentMu.Unlock()
				if !had {
					return
				}
				advWrites.Add(1)
				if err := m.c.Withdraw(ctx, m.n.ID, old); err != nil {
					failed.Add(1)
					return
				}
				writes.Add(1)
				sentMu.Lock()
				live[i]--
				sentMu.Unlock()
				ep := oid(fmt.Sprintf("sim-%d-new", i))
				if publishEP(i, ep) {
					sentMu.Lock()
					churned[ep] = sent[ep]
					sentMu.Unlock()
				}
			}()
		}
		wg.Wait()
		r.churned, _ = waitAll(cfg.wait)
		r.churnConv = time.Since(start)
		r.churnLat, _ = latencies(churned)
	}
	r.writes, r.failed, r.advWrites = writes.Load(), failed.Load(), advWrites.Load()
	for _, m := range ms {
		r.events += m.c.hub.events.Load()
		r.blockEvents += m.c.ownerEvents.Load()
		r.nodeEvents += m.c.nodeEvents.Load()
		r.bytes += m.c.hub.bytes.Load()
		r.applied += m.c.hub.applied.Load()
		r.loads += m.c.hub.loads.Load()
		r.ownerReads += m.c.ownerReads.Load()
		r.callbacks += m.callbacks.Load()
		r.delivered += m.delivered.Load()
	}
	kib := func(m runtime.MemStats) float64 {
		return (float64(m.HeapAlloc) - float64(before.HeapAlloc)) / 1024 / float64(cfg.members)
	}
	r.heapIdle, r.heapLoaded = kib(idle), kib(busy)

	// Deaths: a tenth of the members, spread over the networks (every
	// tenth, from the middle), stop without leaving (their leases expire);
	// their peers must drop their entries.
	for i := len(ms) / 20; i < len(ms); i += 10 {
		dead[i] = true
		r.dead++
	}
	if r.dead == 0 {
		dead[len(ms)-1], r.dead = true, 1
	}
	for i, m := range ms {
		if dead[i] {
			m.c.Close()
		}
	}
	r.purged, r.purge = waitAll(cfg.wait)
	return r
}

func (r simResult) table() string {
	pct := func(ds []time.Duration, p float64) string {
		if len(ds) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(ds[int(p*float64(len(ds)-1))].Microseconds())/1000)
	}
	s := "| members × endpoints (members per network, networks) | converged | open s | publish s | all programmed s | adv→programmed p50 ms | p99 ms | worst member's p99 ms | etcd writes/s (publish) | advert events received | advert events/s | advert MiB | block events | node events | callbacks | owner reads | etcd CPU s / members' CPU s (publish) | etcd RSS MiB | heap KiB/member idle | loaded | churn: converged s, p50/p99 ms | a tenth dead: purged s |\n"
	s += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
	s += fmt.Sprintf("| %d × %d (%d, %d) | %v | %.1f | %.1f | %.1f | %s | %s | %.0f | %.0f | %d | %.0f | %.1f | %d | %d | %d | %d | %.0f / %.0f | %.0f | %.0f | %.0f | %.1f %v, %s/%s | %.1f (%v) |\n",
		r.cfg.members, r.cfg.eps, r.cfg.netSize, r.nets, r.converged, r.opened.Seconds(), r.publish.Seconds(), r.conv.Seconds(),
		pct(r.lat, 0.5), pct(r.lat, 0.99), float64(r.worstMemberP99.Microseconds())/1000,
		float64(r.pubWrites)/r.publish.Seconds(), r.events, float64(r.events)/r.conv.Seconds(),
		float64(r.bytes)/(1<<20), r.blockEvents, r.nodeEvents, r.callbacks, r.ownerReads, r.etcdCPU, r.procCPU, r.etcdRSS,
		r.heapIdle, r.heapLoaded,
		r.churnConv.Seconds(), r.churned, pct(r.churnLat, 0.5), pct(r.churnLat, 0.99), r.purge.Seconds(), r.purged)
	return s
}

// TestControlPlaneSim runs the simulation at a small size in CI: every
// member ends up holding exactly the remote endpoints of its network, etcd
// delivers each advertisement write only to that network's members (not to
// every member), a replaced endpoint reaches every peer, and dead members'
// entries leave.
func TestControlPlaneSim(t *testing.T) {
	r := runSim(t, simConfig{members: 9, eps: 3, netSize: 3, ttl: 5 * time.Second, churn: true, wait: 30 * time.Second})
	t.Logf("\n%s", r.table())
	if r.failed > 0 {
		t.Fatalf("%d store calls failed", r.failed)
	}
	if !r.converged || !r.churned || !r.purged {
		t.Fatalf("converged %v, churn converged %v, dead purged %v", r.converged, r.churned, r.purged)
	}
	// Each advertisement write reaches the members of its network only
	// (watching the whole adverts/ prefix, every member would receive
	// every write: members instead of netSize times).
	if r.events == 0 || r.events > int64(r.cfg.netSize)*r.advWrites {
		t.Fatalf("members received %d advertisement events for %d writes in networks of %d: want at most %d",
			r.events, r.advWrites, r.cfg.netSize, int64(r.cfg.netSize)*r.advWrites)
	}
}

// TestBenchControlPlane is the simulation at full size. It skips unless
// VXNET_BENCH=1; VXNET_SIM_MEMBERS (default 1000), VXNET_SIM_EPS (30) and
// VXNET_SIM_NETSIZE (members per network, 20) set the size, and
// VXNET_SIM_GAP_MS (500) the least time between two deliveries of a set to
// one member; VXNET_SIM_TTL_S the node TTL (20); VXNET_SIM_ETCD the store
// (unset: Debian's etcd; "embedded": this module's etcd server configured
// as the daemon's member; "embedded-shared": the same with gRPC and HTTP on
// one client URL); VXNET_SIM_RATE (endpoints per second across the cluster; 0,
// the default: as fast as the store answers) paces the publish. The node TTL is 20 s; the members' gRPC keepalive timeout is
// 10 s (all members share the test process's CPU: one starved of it is not
// a dead store).
func TestBenchControlPlane(t *testing.T) {
	if os.Getenv("VXNET_BENCH") != "1" {
		t.Skip("benchmark: set VXNET_BENCH=1")
	}
	cfg := simConfig{members: 1000, eps: 30, netSize: 20, ttl: 20 * time.Second, churn: true, wait: 5 * time.Minute,
		kaTimeout: 10 * time.Second}
	gapMS, rate, ttlS := 500, 0, 20
	for env, p := range map[string]*int{"VXNET_SIM_MEMBERS": &cfg.members, "VXNET_SIM_EPS": &cfg.eps, "VXNET_SIM_NETSIZE": &cfg.netSize,
		"VXNET_SIM_GAP_MS": &gapMS, "VXNET_SIM_RATE": &rate, "VXNET_SIM_TTL_S": &ttlS} {
		if v, err := strconv.Atoi(os.Getenv(env)); err == nil && v >= 0 {
			*p = v
		}
	}
	cfg.gap, cfg.rate, cfg.ttl = time.Duration(gapMS)*time.Millisecond, float64(rate), time.Duration(ttlS)*time.Second
	switch cfg.etcd = os.Getenv("VXNET_SIM_ETCD"); cfg.etcd {
	case "", "embedded", "embedded-shared":
	default:
		t.Fatalf("VXNET_SIM_ETCD=%q: want embedded, embedded-shared or nothing (Debian's etcd)", cfg.etcd)
	}
	r := runSim(t, cfg)
	store := "Debian's etcd " + etcdVersion()
	if cfg.etcd != "" {
		store = "this module's etcd server (" + cfg.etcd + ")"
	}
	fmt.Printf("\nstore: %s; node TTL %v; %d store calls failed; deliveries at most every %v per member; publish paced at %.0f endpoints/s (0: unpaced)\n\n%s",
		store, cfg.ttl, r.failed, cfg.gap, cfg.rate, r.table())
}

// procCPUSeconds is a process's user and system CPU time so far (0 if
// /proc cannot tell).
func etcdVersion() string {
	out, err := exec.Command(etcdBinary, "--version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(firstLine(out), "etcd Version: ")
}

func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): state is
	// field 3; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// procRSSMiB is a process's resident memory.
func procRSSMiB(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
