package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// Fault injection: mixed operations (run, rm, connect, disconnect, network
// create and rm) on three hosts sharing an external etcd, while a random
// daemon is killed with SIGKILL every few operations, or restarted with a
// random crash point armed, and started again each time. Checked every few
// operations and at the end: no address held by two containers (the
// daemons' views and the kernels' interfaces), the global IPAM's in-use
// addresses equal to the endpoints that exist, no host veth or sandbox
// namespace without its endpoint or container, and every running container
// reaching every peer on its networks. VXNET_FAULT_OPS sets the size (CI
// runs 40; scripts/bench.sh 500), VXNET_FAULT_SEED replays a run.

type fiCtr struct {
	host int
	nets map[string]bool // overlay networks
}

type fiRun struct {
	t     *testing.T
	rnd   *rand.Rand
	hosts []*harness.Host
	apis  []*bnAPI
	et    *extEtcd
	nets  map[string]netip.Prefix
	ctrs  map[string]*fiCtr
	seq   int
	stats map[string]int
}

func TestFaultInjection(t *testing.T) {
	if _, err := exec.LookPath("etcd"); err != nil {
		testreq.Skip(t, "needs etcd (Debian's etcd-server)")
	}
	ops := 40
	if os.Getenv("VXNET_BENCH") != "" {
		ops = 500
	}
	if s := os.Getenv("VXNET_FAULT_OPS"); s != "" {
		ops = bnEnv(t, "VXNET_FAULT_OPS", ops)
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("VXNET_FAULT_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("VXNET_FAULT_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("fault injection: %d operations, seed %d (VXNET_FAULT_SEED replays it)", ops, seed)

	var store string
	var et *extEtcd
	c := harness.New(t, harness.Options{Hosts: 3, DaemonArgs: func(i int, h *harness.Host) []string {
		return append([]string{"--cluster-store", store, "--advertise-addr", h.Addr.String(), "--node-ttl", "3s", "--resync-interval", "2s"},
			et.tls.daemonArgs()...)
	}})
	h0 := c.Host(0)
	store = "etcd://" + h0.Addr.String() + ":2379"
	et = newExtEtcd(t, h0, c.Dir)
	et.start()
	t.Cleanup(et.kill)
	f := &fiRun{t: t, rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), et: et,
		nets: map[string]netip.Prefix{}, ctrs: map[string]*fiCtr{}, stats: map[string]int{}}
	for _, h := range c.Hosts {
		h.Start()
		f.hosts = append(f.hosts, h)
		f.apis = append(f.apis, bnClient(h))
	}
	f.netCreate()
	f.netCreate()

	start := time.Now()
	nextFault := 3 + f.rnd.IntN(4)
	for i := 1; i <= ops; i++ {
		if i == nextFault {
			f.fault()
			nextFault = i + 3 + f.rnd.IntN(4)
		}
		f.op()
		if i%10 == 0 || i == ops {
			f.check(i%20 == 0 || i == ops)
		}
		if t.Failed() {
			t.Fatalf("stopped at operation %d (seed %d)", i, seed)
		}
	}
	took := time.Since(start)
	keys := make([]string, 0, len(f.stats))
	for k := range f.stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, f.stats[k])
	}
	t.Logf("fault injection: %d operations in %s, seed %d:%s", ops, took.Round(time.Second), seed, b.String())
}

// fault kills a random daemon (SIGKILL) and starts it again, or starts it
// with a random crash point armed for the next operations.
func (f *fiRun) fault() {
	f.t.Helper()
	i := f.rnd.IntN(len(f.hosts))
	h := f.hosts[i]
	h.Kill()
	points := []string{engine.CrashCreateAfterJoin, engine.CrashCreateAfterRuntime, engine.CrashCreateAfterCommit,
		engine.CrashRemoveAfterRuntime, engine.CrashRemoveAfterLocal, engine.CrashConnectAfterJoin}
	if f.rnd.IntN(2) == 0 {
		p := points[f.rnd.IntN(len(points))]
		h.Env = []string{engine.CrashPointEnv + "=" + p}
		f.stats["armed "+p]++
	} else {
		f.stats["sigkill"]++
	}
	h.Start()
	h.Env = nil
	f.apis[i] = bnClient(h)
	f.resync(i)
}

// afterOp restarts a daemon that died at an armed crash point during an
// operation that failed.
func (f *fiRun) afterOp(i int, err error) {
	h := f.hosts[i]
	if err != nil && eventually(3*time.Second, func() bool { return !h.Running() }) {
		f.stats["crashed at a point"]++
		h.Start()
		f.apis[i] = bnClient(h)
	}
	if err != nil {
		f.resync(i)
	}
}

// resync rebuilds the model of host i's containers from its daemon.
func (f *fiRun) resync(i int) {
	f.t.Helper()
	for name, c := range f.ctrs {
		if c.host == i {
			delete(f.ctrs, name)
		}
	}
	for _, v := range f.ps(i) {
		c := &fiCtr{host: i, nets: map[string]bool{}}
		for n := range v.NetworkSettings.Networks {
			if _, ok := f.nets[n]; ok {
				c.nets[n] = true
			}
		}
		f.ctrs[strings.TrimPrefix(v.Names[0], "/")] = c
	}
}

type fiView struct {
	Names           []string
	State           string
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress string
			NetworkID string
		}
	}
}

func (f *fiRun) ps(i int) []fiView {
	f.t.Helper()
	var out []fiView
	f.apis[i].must(f.t, "GET", "/containers/json?all=1", nil, &out)
	return out
}

func (f *fiRun) pick(m map[string]*fiCtr, ok func(*fiCtr) bool) (string, *fiCtr) {
	var names []string
	for n, c := range m {
		if ok(c) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	n := names[f.rnd.IntN(len(names))]
	return n, m[n]
}

func (f *fiRun) netNames() []string {
	var out []string
	for n := range f.nets {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// op runs one random operation. Errors are allowed (a daemon may die at an
// armed crash point, a network may still have endpoints elsewhere); what
// must hold is checked by check.
func (f *fiRun) op() {
	f.t.Helper()
	nets := f.netNames()
	switch r := f.rnd.IntN(100); {
	case r < 35 && len(nets) > 0 && len(f.ctrs) < 30:
		i := f.rnd.IntN(len(f.hosts))
		f.seq++
		name := fmt.Sprintf("f%d", f.seq)
		net := nets[f.rnd.IntN(len(nets))]
		_, err := f.apis[i].run(name, net, netip.Addr{})
		f.count("run", err)
		if err == nil {
			f.ctrs[name] = &fiCtr{host: i, nets: map[string]bool{net: true}}
		}
		f.afterOp(i, err)
	case r < 60:
		name, c := f.pick(f.ctrs, func(*fiCtr) bool { return true })
		if c == nil {
			return
		}
		err := f.apis[c.host].rm(name)
		f.count("rm", err)
		delete(f.ctrs, name)
		f.afterOp(c.host, err)
	case r < 75:
		name, c := f.pick(f.ctrs, func(c *fiCtr) bool { return len(c.nets) > 0 && len(c.nets) < len(f.nets) })
		if c == nil {
			return
		}
		var to string
		for _, n := range nets {
			if !c.nets[n] {
				to = n
				break
			}
		}
		_, err := f.apis[c.host].do("POST", "/networks/"+to+"/connect", map[string]any{"Container": name}, nil)
		f.count("connect", err)
		if err == nil {
			c.nets[to] = true
		}
		f.afterOp(c.host, err)
	case r < 85:
		name, c := f.pick(f.ctrs, func(c *fiCtr) bool { return len(c.nets) > 1 })
		if c == nil {
			return
		}
		var from string
		for _, n := range nets {
			if c.nets[n] {
				from = n
				break
			}
		}
		_, err := f.apis[c.host].do("POST", "/networks/"+from+"/disconnect", map[string]any{"Container": name}, nil)
		f.count("disconnect", err)
		if err == nil {
			delete(c.nets, from)
		}
		f.afterOp(c.host, err)
	case r < 93 || len(nets) == 0:
		if len(nets) < 4 {
			f.netCreate()
		}
	default:
		used := map[string]bool{}
		for _, c := range f.ctrs {
			for n := range c.nets {
				used[n] = true
			}
		}
		for _, n := range nets {
			if !used[n] && len(nets) > 1 {
				_, err := f.apis[f.rnd.IntN(len(f.apis))].do("DELETE", "/networks/"+n, nil, nil)
				f.count("network rm", err)
				if err == nil {
					delete(f.nets, n)
				}
				return
			}
		}
	}
}

func (f *fiRun) count(what string, err error) {
	f.stats[what]++
	if err != nil {
		f.stats[what+" failed"]++
		f.t.Logf("%s: %v", what, err)
	}
}

func (f *fiRun) netCreate() {
	f.t.Helper()
	f.seq++
	name := fmt.Sprintf("fn%d", f.seq)
	sub := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 100+f.seq/250, f.seq%250))
	i := f.rnd.IntN(len(f.apis))
	_, err := f.apis[i].do("POST", "/networks/create", map[string]any{"Name": name, "Driver": "overlay",
		"IPAM": map[string]any{"Config": []map[string]string{{"Subnet": sub.String()}}}}, nil)
	f.count("network create", err)
	if err == nil {
		f.nets[name] = sub
		// Every host sees it before it is used there.
		for j, a := range f.apis {
			if !eventually(20*time.Second, func() bool { _, err := a.do("GET", "/networks/"+name, nil, nil); return err == nil }) {
				f.t.Errorf("network %s not seen on h%d", name, j)
			}
		}
	}
}

// check verifies the invariants; reach adds the all-pairs reachability.
func (f *fiRun) check(reach bool) {
	f.t.Helper()
	byNet := map[string]map[netip.Addr]string{} // network -> address -> container
	eps := map[string]int{}                     // network -> endpoints
	netIDs := map[string]string{}
	var running []struct {
		host       int
		name       string
		addrs      map[string]netip.Addr
		sandboxKey string
	}
	for i := range f.hosts {
		vs := f.ps(i)
		bridgeEps := 0
		for _, v := range vs {
			name := strings.TrimPrefix(v.Names[0], "/")
			addrs := map[string]netip.Addr{}
			for n, s := range v.NetworkSettings.Networks {
				if _, ok := f.nets[n]; !ok {
					bridgeEps++
					continue
				}
				netIDs[n] = s.NetworkID
				a, err := netip.ParseAddr(s.IPAddress)
				if err != nil {
					f.t.Errorf("%s on %s: bad address %q", name, n, s.IPAddress)
					continue
				}
				if byNet[n] == nil {
					byNet[n] = map[netip.Addr]string{}
				}
				if other, dup := byNet[n][a]; dup {
					f.t.Errorf("address %s on %s held by %s and %s", a, n, other, name)
				}
				byNet[n][a] = name
				eps[n]++
				addrs[n] = a
			}
			var key string
			if v.State == "running" {
				var insp struct{ NetworkSettings struct{ SandboxKey string } }
				f.apis[i].must(f.t, "GET", "/containers/"+name+"/json", nil, &insp)
				key = insp.NetworkSettings.SandboxKey
				running = append(running, struct {
					host       int
					name       string
					addrs      map[string]netip.Addr
					sandboxKey string
				}{i, name, addrs, key})
			}
		}
		// Kernel objects with owners: host veths are the bridge
		// endpoints' (gateway bridge), sandbox namespaces the containers'.
		out, _ := f.hosts[i].Exec("ip", "-o", "link", "show", "type", "veth")
		veths := strings.Count(out, ": vxv")
		if veths != bridgeEps {
			f.t.Errorf("h%d: %d host veths for %d bridge endpoints", i, veths, bridgeEps)
		}
		ents, _ := os.ReadDir(filepath.Join(f.hosts[i].ExecRoot, "netns"))
		sandboxes := 0
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "ov-") {
				sandboxes++
			}
		}
		if sandboxes != len(vs) {
			f.t.Errorf("h%d: %d sandbox namespaces for %d containers", i, sandboxes, len(vs))
		}
	}
	// The kernels: each running container's interfaces hold the addresses
	// its daemon reports, and no two containers share one.
	seen := map[netip.Addr]string{}
	for _, r := range running {
		out, code := f.hosts[r.host].Exec("nsenter", "--net="+r.sandboxKey, "ip", "-o", "-4", "addr", "show")
		if code != 0 {
			f.t.Errorf("%s: read interfaces: %s", r.name, out)
			continue
		}
		have := map[netip.Addr]bool{}
		for _, l := range strings.Split(out, "\n") {
			fs := strings.Fields(l)
			for j := 0; j+1 < len(fs); j++ {
				if fs[j] == "inet" {
					if p, err := netip.ParsePrefix(fs[j+1]); err == nil && !p.Addr().IsLoopback() {
						have[p.Addr()] = true
						for _, sub := range f.nets {
							if sub.Contains(p.Addr()) {
								if other, dup := seen[p.Addr()]; dup {
									f.t.Errorf("kernels: %s on %s and %s", p.Addr(), other, r.name)
								}
								seen[p.Addr()] = r.name
							}
						}
					}
				}
			}
		}
		for n, a := range r.addrs {
			if !have[a] {
				f.t.Errorf("%s: %s address %s not on any interface", r.name, n, a)
			}
		}
	}
	// The store: IPAM's in-use addresses are exactly the endpoints'.
	for n, id := range netIDs {
		inUse := f.ipamInUse(id)
		if len(inUse) != eps[n] {
			f.t.Errorf("network %s: IPAM holds %d addresses (%v), %d endpoints exist", n, len(inUse), inUse, eps[n])
		}
		for _, a := range inUse {
			if _, ok := byNet[n][a]; !ok {
				f.t.Errorf("network %s: address %s allocated, no endpoint holds it", n, a)
			}
		}
	}
	for _, n := range f.netNames() {
		if _, ok := netIDs[n]; ok {
			continue
		}
		var v struct{ Id string }
		if _, err := f.apis[0].do("GET", "/networks/"+n, nil, &v); err == nil {
			if inUse := f.ipamInUse(v.Id); len(inUse) != 0 {
				f.t.Errorf("network %s has no endpoints, IPAM holds %v", n, inUse)
			}
		}
	}
	if !reach {
		return
	}
	// Every running container reaches every other on its networks.
	for _, r := range running {
		var dsts []string
		for n, a := range r.addrs {
			for _, o := range running {
				if oa, ok := o.addrs[n]; ok && o.name != r.name {
					_ = a
					dsts = append(dsts, oa.String())
				}
			}
		}
		if len(dsts) == 0 {
			continue
		}
		script := "for a in " + strings.Join(dsts, " ") + "; do ping -c1 -W1 $a >/dev/null 2>&1 || echo $a; done"
		var missing string
		if !eventually(30*time.Second, func() bool {
			out, _, code := f.hosts[r.host].CLI("exec", r.name, "sh", "-c", script)
			missing = strings.TrimSpace(out)
			return code == 0 && missing == ""
		}) {
			f.t.Errorf("%s (h%d) cannot reach %s", r.name, r.host, strings.ReplaceAll(missing, "\n", " "))
			for n, addr := range byNet {
				for _, m := range strings.Fields(missing) {
					if a, err := netip.ParseAddr(m); err == nil && addr[a] != "" {
						f.t.Logf("%s on %s is %s (h%d)", a, n, addr[a], f.ctrs[addr[a]].host)
						for j, h := range f.hosts {
							out, _, _ := h.CLI("network", "inspect", "-v", n)
							f.t.Logf("h%d: network inspect -v %s:\n%s", j, n, out)
						}
					}
				}
			}
		}
	}
}

// ipamInUse reads a global network's allocated addresses from etcd (the
// per-host blocks of the global IPAM, each listing its addresses with
// their owners).
func (f *fiRun) ipamInUse(netID string) []netip.Addr {
	f.t.Helper()
	h := f.et.h
	tls := f.et.tls
	out, code := h.Exec("etcdctl", "--endpoints", "https://"+h.Addr.String()+":2379",
		"--cacert", tls.CA, "--cert", tls.ClientCert, "--key", tls.ClientKey, "get", "--prefix",
		"/vxnet/v1/ipam/blocks/"+netID+"/", "--print-value-only")
	if code != 0 {
		f.t.Errorf("etcdctl: %s", out)
		return nil
	}
	var all []netip.Addr
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "{") {
			continue
		}
		var blk struct {
			Addrs map[netip.Addr]json.RawMessage
		}
		if err := json.Unmarshal([]byte(l), &blk); err != nil {
			f.t.Errorf("decode address block of %s (did the global IPAM layout change?): %v", netID, err)
			return nil
		}
		for a := range blk.Addrs {
			all = append(all, a)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Less(all[j]) })
	return all
}
