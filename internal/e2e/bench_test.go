package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/netns"
)

// Benchmarks of issues 2 (single host), 3 (cluster) and 4 (overlay). They
// print markdown tables; BENCHMARKS.md says what each number means. Run
// them with scripts/bench.sh.

// TestBenchSingleHost: network connect of a running container and run -d
// at the API level, run -d through the CLI, and the same veth plumbing
// done by hand with ip(8) and with netlink, interleaved in one run.
func TestBenchSingleHost(t *testing.T) {
	bnGate(t)
	nConnect := bnEnv(t, "VXNET_BENCH_CONNECT_N", 200)
	nRun := bnEnv(t, "VXNET_BENCH_RUN_N", 100)
	c := harness.New(t, harness.Options{Hosts: 1, DaemonArgs: func(int, *harness.Host) []string { return bnDaemonArgs }})
	h := c.Host(0)
	h.Start()
	api := bnClient(h)
	cli(t, h, "network", "create", "--subnet", "10.91.0.0/16", "n1")
	cli(t, h, "network", "create", "--subnet", "10.92.0.0/16", "n2")
	if _, err := api.run("a", "n1", netip.Addr{}); err != nil {
		t.Fatal(err)
	}

	raw := bnNewRawPlumbing(t, c)

	// Connect, interleaved with the raw plumbing.
	var connect, disconnect, rawIP, rawIPNS, rawNL, rawNLNS []time.Duration
	for i := 0; i < nConnect; i++ {
		t0 := time.Now()
		api.must(t, "POST", "/networks/n2/connect", map[string]any{"Container": "a"}, nil)
		connect = append(connect, time.Since(t0))
		t0 = time.Now()
		api.must(t, "POST", "/networks/n2/disconnect", map[string]any{"Container": "a"}, nil)
		disconnect = append(disconnect, time.Since(t0))
		ns, plumb := raw.ip(t, i)
		rawIPNS, rawIP = append(rawIPNS, ns+plumb), append(rawIP, plumb)
		ns, plumb = raw.netlink(t, i)
		rawNLNS, rawNL = append(rawNLNS, ns+plumb), append(rawNL, plumb)
	}
	if !ping(t, h, "a", "10.91.0.1") {
		t.Error("container a cannot ping its gateway after the connect loop")
	}

	// run -d: API and CLI alternately; each container removed (untimed).
	var runAPI, createAPI, startAPI, runCLI []time.Duration
	for i := 0; i < nRun; i++ {
		name := fmt.Sprintf("r%d", i)
		t0 := time.Now()
		id, err := api.create(name, "n1", netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := api.start(id); err != nil {
			t.Fatal(err)
		}
		t2 := time.Now()
		runAPI, createAPI, startAPI = append(runAPI, t2.Sub(t0)), append(createAPI, t1.Sub(t0)), append(startAPI, t2.Sub(t1))
		if err := api.rm(id); err != nil {
			t.Fatal(err)
		}
		name = fmt.Sprintf("c%d", i)
		t0 = time.Now()
		h.MustCLI(t, "run", "-d", "--name", name, "--net", "n1", "busybox", "sleep", "1d")
		runCLI = append(runCLI, time.Since(t0))
		if err := api.rm(name); err != nil {
			t.Fatal(err)
		}
	}

	bnPrint(t, "Single host: attach latency (API over the unix socket) vs the same plumbing by hand", bnLatencyHeader, [][]string{
		bnLatencyRow("network connect (API)", connect),
		bnLatencyRow("network disconnect (API)", disconnect),
		bnLatencyRow("by hand, ip(8): veth+addr+up+master", rawIP),
		bnLatencyRow("by hand, ip(8): netns add + the above", rawIPNS),
		bnLatencyRow("by hand, netlink: veth+addr+up+master", rawNL),
		bnLatencyRow("by hand, netlink: netns create + the above", rawNLNS),
		bnLatencyRow("run -d (API: create+start)", runAPI),
		bnLatencyRow("  of which create", createAPI),
		bnLatencyRow("  of which start", startAPI),
		bnLatencyRow("run -d (vxnet CLI process)", runCLI),
	})
	sc, sip, snl := bnSummary(connect), bnSummary(rawIP), bnSummary(rawNL)
	sr, sipns, snlns := bnSummary(runAPI), bnSummary(rawIPNS), bnSummary(rawNLNS)
	bnPrint(t, "Single host: overhead ratios (p50)", []string{"ratio", "value"}, [][]string{
		{"connect / by hand ip(8)", bnRatio(sc.P50, sip.P50)},
		{"connect / by hand netlink", bnRatio(sc.P50, snl.P50)},
		{"run -d API / by hand ip(8) incl. netns", bnRatio(sr.P50, sipns.P50)},
		{"run -d API / by hand netlink incl. netns", bnRatio(sr.P50, snlns.P50)},
		{"run -d CLI / run -d API", bnRatio(bnSummary(runCLI).P50, sr.P50)},
	})
}

// bnRawPlumbing does what attaching a container does to the kernel, by
// hand, in a scratch "host" namespace with a bridge: a veth pair with one
// end in a fresh namespace, an address, links up, the host end on the
// bridge.
type bnRawPlumbing struct {
	name   string // ip netns name of the scratch host (ip(8) variant)
	prefix string
	nlHost *netlink.Handle
	nlBr   int
	nlDir  string
}

func bnNewRawPlumbing(t *testing.T, c *harness.Cluster) *bnRawPlumbing {
	t.Helper()
	r := &bnRawPlumbing{prefix: bnPrefix()}
	r.name = r.prefix + "-raw"
	r.nlDir = filepath.Join(c.Dir, "bn-raw")
	bnIP(t, "netns", "add", r.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", r.name).Run() })
	bnIP(t, "-n", r.name, "link", "add", "bnbr", "type", "bridge")
	bnIP(t, "-n", r.name, "link", "set", "bnbr", "up")
	bnIP(t, "-n", r.name, "link", "add", "bnbr2", "type", "bridge")
	bnIP(t, "-n", r.name, "link", "set", "bnbr2", "up")
	h, err := netns.Handle("/run/netns/" + r.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	br, err := h.LinkByName("bnbr2")
	if err != nil {
		t.Fatal(err)
	}
	r.nlHost, r.nlBr = h, br.Attrs().Index
	return r
}

func bnIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// ip does it with one ip(8) process per step. It returns the time of
// "ip netns add" and of the plumbing after it.
func (r *bnRawPlumbing) ip(t *testing.T, i int) (nsTime, plumb time.Duration) {
	t.Helper()
	ns := fmt.Sprintf("%s-i%d", r.prefix, i)
	veth := fmt.Sprintf("bnv%d", i)
	addr := fmt.Sprintf("10.93.%d.%d/16", i/250, i%250+2)
	t0 := time.Now()
	bnIP(t, "netns", "add", ns)
	t1 := time.Now()
	bnIP(t, "-n", r.name, "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", ns)
	bnIP(t, "-n", r.name, "link", "set", veth, "master", "bnbr", "up")
	bnIP(t, "-n", ns, "addr", "add", addr, "dev", "eth1")
	bnIP(t, "-n", ns, "link", "set", "eth1", "up")
	t2 := time.Now()
	bnIP(t, "netns", "del", ns) // takes the veth pair with it
	return t1.Sub(t0), t2.Sub(t1)
}

// netlink does it through netlink from this process: the kernel's cost
// without process start-up.
func (r *bnRawPlumbing) netlink(t *testing.T, i int) (nsTime, plumb time.Duration) {
	t.Helper()
	path := filepath.Join(r.nlDir, fmt.Sprint(i))
	veth := fmt.Sprintf("bnw%d", i)
	addr, _ := netlink.ParseAddr(fmt.Sprintf("10.94.%d.%d/16", i/250, i%250+2))
	t0 := time.Now()
	if err := netns.Create(path); err != nil {
		t.Fatal(err)
	}
	defer netns.Delete(path)
	t1 := time.Now()
	fd, err := netns.HandleFd(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.MasterIndex = veth, r.nlBr
	if err := r.nlHost.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth1", PeerNamespace: netlink.NsFd(int(fd))}); err != nil {
		t.Fatalf("raw netlink: veth: %v", err)
	}
	hl, err := r.nlHost.LinkByName(veth)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.nlHost.LinkSetUp(hl); err != nil {
		t.Fatal(err)
	}
	in, err := netns.Handle(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cl, err := in.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.AddrAdd(cl, addr); err != nil {
		t.Fatal(err)
	}
	if err := in.LinkSetUp(cl); err != nil {
		t.Fatal(err)
	}
	return t1.Sub(t0), time.Since(t1)
}

// TestBenchCluster: three hosts on embedded etcd plus one without cluster
// mode. Network create on host 0 until host 2's API shows it; address
// allocation through containers and through internal/cluster directly,
// one host alone and three at once; daemon memory.
func TestBenchCluster(t *testing.T) {
	bnGate(t)
	nProp := bnEnv(t, "VXNET_BENCH_NETPROP_N", 50)
	nCtr := bnEnv(t, "VXNET_BENCH_ALLOC_CTRS", 20)
	nAlloc := bnEnv(t, "VXNET_BENCH_ALLOC_N", 200)
	par := bnEnv(t, "VXNET_BENCH_ALLOC_PAR", 1)
	c := harness.New(t, harness.Options{Hosts: 4, DaemonArgs: bnOverlayHosts(3)})
	for _, h := range c.Hosts {
		h.Start()
	}
	apis := []*bnAPI{bnClient(c.Host(0)), bnClient(c.Host(1)), bnClient(c.Host(2)), bnClient(c.Host(3))}
	time.Sleep(3 * time.Second) // let the members settle before reading memory (not an assertion)
	rssIdle := make([]float64, 4)
	for i, h := range c.Hosts {
		rssIdle[i] = bnRSS(t, h)
	}

	// 1. Network create on host 0 -> visible through host 2's API.
	var fromReturn, fromSend, createLat []time.Duration
	negative := 0
	for i := 0; i < nProp; i++ {
		name := fmt.Sprintf("bnp%d", i)
		seen := make(chan time.Time, 1)
		stop := make(chan struct{})
		go func() {
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				if code, _ := apis[2].do("GET", "/networks/"+name, nil, nil); code == 200 {
					seen <- time.Now()
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
			close(seen)
		}()
		tSend := time.Now()
		if _, err := apis[0].do("POST", "/networks/create", map[string]any{"Name": name, "Driver": "overlay"}, nil); err != nil {
			close(stop)
			t.Fatal(err)
		}
		tRet := time.Now()
		tSeen, ok := <-seen
		if !ok {
			t.Fatalf("network %s created on h0 not visible on h2 after 15 s", name)
		}
		fromSend, fromReturn, createLat = append(fromSend, tSeen.Sub(tSend)), append(fromReturn, max(0, tSeen.Sub(tRet))), append(createLat, tRet.Sub(tSend))
		if tSeen.Before(tRet) {
			negative++
		}
		apis[0].must(t, "DELETE", "/networks/"+name, nil, nil)
		if !bnPoll(15*time.Second, 10*time.Millisecond, func() bool {
			code, _ := apis[2].do("GET", "/networks/"+name, nil, nil)
			return code == 404
		}) {
			t.Fatalf("network %s still on h2 15 s after its removal", name)
		}
	}
	bnPrint(t, fmt.Sprintf("Cluster (3 hosts, embedded etcd): overlay network created on h0 -> GET /networks/NAME answers 200 on h2 (polled every 2 ms); %d of %d seen before h0's create returned (counted as 0)", negative, nProp),
		bnLatencyHeader, [][]string{
			bnLatencyRow("create request on h0 (API latency)", createLat),
			bnLatencyRow("create returned on h0 -> visible on h2", fromReturn),
			bnLatencyRow("create sent on h0 -> visible on h2", fromSend),
		})

	// 2a. Allocation through containers: run -d (API) on an overlay network,
	// one host alone, then three hosts at once.
	apis[0].createOverlay(t, "bnalloc", "10.220.0.0/16")
	for _, a := range apis[1:3] {
		if !bnPoll(15*time.Second, 10*time.Millisecond, func() bool { code, _ := a.do("GET", "/networks/bnalloc", nil, nil); return code == 200 }) {
			t.Fatalf("bnalloc not visible on %s", a.h.Name)
		}
	}
	runMany := func(hosts []int, tag string) (time.Duration, []time.Duration) {
		var mu sync.Mutex
		var lat []time.Duration
		var wg sync.WaitGroup
		errs := make(chan error, len(hosts))
		t0 := time.Now()
		for _, hi := range hosts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < nCtr; j++ {
					s := time.Now()
					if _, err := apis[hi].run(fmt.Sprintf("%s%d", tag, j), "bnalloc", netip.Addr{}); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					lat = append(lat, time.Since(s))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		wall := time.Since(t0)
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		return wall, lat
	}
	// VXNET_BENCH_PPROF=PREFIX: the Go CPU profiles of h0 and h1 over each
	// run, in PREFIX-{solo,all}-h{0,1}.pprof (the daemons serve
	// /debug/pprof/ with VXNET_BENCH_LOG=debug).
	profile := func(tag string) func() {
		var profs sync.WaitGroup
		pre := os.Getenv("VXNET_BENCH_PPROF")
		if pre == "" {
			return profs.Wait
		}
		secs := bnEnv(t, "VXNET_BENCH_PPROF_SECS", 5)
		for hi := 0; hi < 2; hi++ {
			profs.Add(1)
			go func() {
				defer profs.Done()
				resp, err := apis[hi].c.Get(fmt.Sprintf("http://vxnet/debug/pprof/profile?seconds=%d", secs))
				if err != nil {
					t.Logf("pprof: %v", err)
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				os.WriteFile(fmt.Sprintf("%s-%s-h%d.pprof", pre, tag, hi), b, 0o644)
			}()
		}
		return profs.Wait
	}
	profWait := profile("solo")
	// VXNET_BENCH_PERF=FILE: a system-wide perf record over the solo run.
	var perf *exec.Cmd
	if f := os.Getenv("VXNET_BENCH_PERF"); f != "" {
		perf = exec.Command("perf", "record", "-a", "-g", "-F", "999", "-o", f)
		if err := perf.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	cpu0 := bnCPUSnapshot()
	wallSolo, latSolo := runMany([]int{0}, "solo")
	cpu1 := bnCPUSnapshot()
	if perf != nil {
		perf.Process.Signal(os.Interrupt)
		perf.Wait()
	}
	profWait()
	profWait = profile("all")
	cpu1b := bnCPUSnapshot()
	wallAll, latAll := runMany([]int{0, 1, 2}, "all")
	cpu2 := bnCPUSnapshot()
	profWait()
	ips := map[string]string{}
	for hi := 0; hi < 3; hi++ {
		var list []struct {
			Names           []string
			NetworkSettings struct {
				Networks map[string]struct{ IPAddress string }
			}
		}
		apis[hi].must(t, "GET", "/containers/json", nil, &list)
		for _, ct := range list {
			ip := ct.NetworkSettings.Networks["bnalloc"].IPAddress
			if other, dup := ips[ip]; dup && ip != "" {
				t.Errorf("address %s given to %s and %s", ip, other, ct.Names)
			}
			ips[ip] = fmt.Sprint(c.Host(hi).Name, ct.Names)
		}
	}
	rate := func(n int, d time.Duration) string { return fmt.Sprintf("%.1f", float64(n)/d.Seconds()) }
	bnPrint(t, "Cluster: global address allocation through run -d (API create+start) on an overlay network",
		[]string{"what", "containers", "wall s", "containers/s", "p50 ms", "p99 ms"}, [][]string{
			{"h0 alone", fmt.Sprint(nCtr), fmt.Sprintf("%.2f", wallSolo.Seconds()), rate(nCtr, wallSolo), bnMS(bnSummary(latSolo).P50), bnMS(bnSummary(latSolo).P99)},
			{"h0, h1, h2 at once", fmt.Sprint(3 * nCtr), fmt.Sprintf("%.2f", wallAll.Seconds()), rate(3*nCtr, wallAll), bnMS(bnSummary(latAll).P50), bnMS(bnSummary(latAll).P99)},
		})

	bnPrint(t, "Cluster: CPU ms per container started (run -d above), by process class (utime+stime from /proc; children = what the class exec'd and reaped)",
		[]string{"class", "h0 alone", "h0, h1, h2 at once"},
		bnCPURows([]map[string]float64{bnCPUDelta(cpu0, cpu1), bnCPUDelta(cpu1b, cpu2)}, []int{nCtr, 3 * nCtr}, []time.Duration{wallSolo, wallAll}))

	// 2b. Raw allocations: internal/cluster's AllocateAddress from worker
	// processes inside the host namespaces, each talking to its host's
	// etcd member.
	netID := apis[0].createOverlay(t, "bnraw", "10.221.0.0/16")
	worker := func(hi int) *bnWorker {
		h := c.Host(hi)
		return bnStartWorker(t, c, h, append(bnEtcdEnv(t, c, h, false), "VXNET_BN_WORKER=alloc",
			"VXNET_BN_NET="+netID, fmt.Sprintf("VXNET_BN_N=%d", nAlloc), fmt.Sprintf("VXNET_BN_PAR=%d", par), "VXNET_BN_ADDR="+h.Addr.String())...)
	}
	seenAddr := map[string]bool{}
	collect := func(ws []*bnWorker) (time.Duration, []time.Duration, int, string) {
		for _, w := range ws {
			fmt.Fprintln(w.stdin, "GO")
		}
		var wall time.Duration
		var lat []time.Duration
		errs, first := 0, ""
		for _, w := range ws {
			var r bnAllocResult
			w.result(t, 10*time.Minute, &r)
			wall = max(wall, r.Wall)
			lat = append(lat, r.Durs...)
			errs += r.Errs
			if first == "" {
				first = r.FirstErr
			}
			for _, a := range r.Addrs {
				if a == "" {
					continue
				}
				if seenAddr[a] {
					t.Errorf("raw allocation: %s given out twice", a)
				}
				seenAddr[a] = true
			}
		}
		return wall, lat, errs, first
	}
	wSolo, lSolo, eSolo, fSolo := collect([]*bnWorker{worker(0)})
	wAll, lAll, eAll, fAll := collect([]*bnWorker{worker(0), worker(1), worker(2)})
	for _, f := range []string{fSolo, fAll} {
		if f != "" {
			t.Logf("allocation error (first): %s", f)
		}
	}
	bnPrint(t, fmt.Sprintf("Cluster: raw global allocations (cluster.AllocateAddress, %d goroutine(s) per host, no containers)", par),
		[]string{"what", "allocations", "errors", "wall s", "allocations/s", "p50 ms", "p99 ms"}, [][]string{
			{"h0 alone", fmt.Sprint(nAlloc), fmt.Sprint(eSolo), fmt.Sprintf("%.2f", wSolo.Seconds()), rate(nAlloc-eSolo, wSolo), bnMS(bnSummary(lSolo).P50), bnMS(bnSummary(lSolo).P99)},
			{"h0, h1, h2 at once", fmt.Sprint(3 * nAlloc), fmt.Sprint(eAll), fmt.Sprintf("%.2f", wAll.Seconds()), rate(3*nAlloc-eAll, wAll), bnMS(bnSummary(lAll).P50), bnMS(bnSummary(lAll).P99)},
		})

	// 3. Memory.
	rows := [][]string{}
	for i, h := range c.Hosts {
		role := "embedded etcd voter"
		if i == 0 {
			role += " (--cluster-init)"
		}
		if i == 3 {
			role = "no cluster mode"
		}
		rows = append(rows, []string{h.Name, role, fmt.Sprintf("%.1f", rssIdle[i]), fmt.Sprintf("%.1f", bnRSS(t, h))})
	}
	bnPrint(t, "Cluster: daemon memory (VmRSS)", []string{"host", "mode", "idle after start MiB", "after the benchmarks MiB"}, rows)
}

// bnPoll polls cond every step until it holds or d has passed.
func bnPoll(d, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// bnMAC is Docker's MAC for an IPv4 address.
func bnMAC(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// bnAdverts collects the advertisement times a watch worker prints.
type bnAdverts struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func bnWatchAdverts(w *bnWorker) *bnAdverts {
	a := &bnAdverts{seen: map[string]time.Time{}}
	go func() {
		for l := range w.lines {
			f := strings.Fields(l)
			if len(f) != 3 || f[0] != "ADV" {
				continue
			}
			ns, _ := strconv.ParseInt(f[1], 10, 64)
			a.mu.Lock()
			if _, ok := a.seen[f[2]]; !ok {
				a.seen[f[2]] = time.Unix(0, ns)
			}
			a.mu.Unlock()
		}
	}()
	return a
}

func (a *bnAdverts) get(ip string, wait time.Duration) (time.Time, bool) {
	var at time.Time
	ok := bnPoll(wait, time.Millisecond, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		var found bool
		at, found = a.seen[ip]
		return found
	})
	return at, ok
}

// bnPingUntil sends ICMP echo requests from a raw socket opened inside
// namespace ns towards dst, one every 5 ms, until the first reply (at
// most limit); the returned func waits for it and returns when the reply
// was read. A raw socket keeps sending through neighbour failures, which
// would end a ping(8) that was given -c1.
func bnPingUntil(t *testing.T, ns string, dst netip.Addr, limit time.Duration) func() (time.Time, bool) {
	t.Helper()
	var fd int
	err := netns.Do(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		t.Fatalf("raw ICMP socket in %s: %v", ns, err)
	}
	tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	id := uint16(time.Now().UnixNano())
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for seq := uint16(0); ; seq++ {
			msg := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq)}
			sum := uint32(0)
			for i := 0; i < len(msg); i += 2 {
				sum += uint32(msg[i])<<8 | uint32(msg[i+1])
			}
			sum = (sum >> 16) + (sum & 0xffff)
			sum += sum >> 16
			cs := ^uint16(sum)
			msg[2], msg[3] = byte(cs>>8), byte(cs)
			unix.Sendto(fd, msg, 0, sa) // errors (unresolved neighbour) are expected at first
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() (time.Time, bool) {
		defer func() { close(stop); <-sent; unix.Close(fd) }()
		deadline := time.Now().Add(limit)
		buf := make([]byte, 1500)
		for time.Now().Before(deadline) {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			at := time.Now()
			if err != nil || n < 28 {
				continue
			}
			f, ok := from.(*unix.SockaddrInet4)
			ihl := int(buf[0]&0x0f) * 4
			if !ok || netip.AddrFrom4(f.Addr) != dst || n < ihl+8 {
				continue
			}
			icmp := buf[ihl:n]
			if icmp[0] == 0 && uint16(icmp[4])<<8|uint16(icmp[5]) == id {
				return at, true
			}
		}
		return time.Time{}, false
	}
}

// TestBenchOverlay: two hosts on one overlay network, in steady state
// (each already has a container on it). Container started on A -> first
// ping reply in a container on B; advertisement -> FDB and neighbour
// entries on B; removal -> entries gone; then iperf3 throughput of the
// overlay, the underlay and a VXLAN path of the same shape built by hand.
func TestBenchOverlay(t *testing.T) {
	bnGate(t)
	n := bnEnv(t, "VXNET_BENCH_CONV_N", 50)
	secs := bnEnv(t, "VXNET_BENCH_IPERF_SECS", 10)
	rounds := bnEnv(t, "VXNET_BENCH_IPERF_ROUNDS", 1)
	if n > 200 {
		t.Fatalf("VXNET_BENCH_CONV_N=%d: at most 200", n)
	}
	c := harness.New(t, harness.Options{Hosts: 2, DaemonArgs: bnOverlayHosts(2)})
	for _, h := range c.Hosts {
		h.Start()
	}
	A, B := c.Host(0), c.Host(1)
	apiA, apiB := bnClient(A), bnClient(B)
	apiA.createOverlay(t, "bnov", "10.230.0.0/16")
	if !bnPoll(15*time.Second, 10*time.Millisecond, func() bool { code, _ := apiB.do("GET", "/networks/bnov", nil, nil); return code == 200 }) {
		t.Fatal("bnov not visible on B")
	}
	anchorIP, probeIP := netip.MustParseAddr("10.230.0.10"), netip.MustParseAddr("10.230.0.20")
	if _, err := apiA.run("anchor", "bnov", anchorIP); err != nil {
		t.Fatal(err)
	}
	if _, err := apiB.run("probe", "bnov", probeIP); err != nil {
		t.Fatal(err)
	}
	sbA, sbB := apiA.sandbox(t, "anchor"), apiB.sandbox(t, "probe")
	if out, err := exec.Command("nsenter", "--net="+sbB, "ping", "-c1", "-w10", anchorIP.String()).CombinedOutput(); err != nil {
		t.Fatalf("probe on B cannot ping anchor on A: %v: %s", err, out)
	}
	// ARP retries every 10 ms instead of 1 s in the probe's namespace, so
	// an address whose neighbour entry is not there yet is asked for again
	// soon (the overlay answers ARP by proxy from its neighbour entries).
	if out, err := exec.Command("nsenter", "--net="+sbB, "sysctl", "-q", "-w", "net.ipv4.neigh.eth0.retrans_time_ms=10").CombinedOutput(); err != nil {
		t.Fatalf("sysctl in the probe: %v: %s", err, out)
	}
	kB := bnOpenKernel(t, apiB.overlayNS(t, "bnov"))
	watch := bnWatchAdverts(bnStartWorker(t, c, A, append(bnEtcdEnv(t, c, A, false), "VXNET_BN_WORKER=watch")...))

	var runLat, pingFromStart, pingFromRet, fdbFromRet, neighFromRet, fdbFromAdv, neighFromAdv, bothFromAdv, advFromStart, goneFromRm []time.Duration
	for i := 0; i < n; i++ {
		ip := netip.AddrFrom4([4]byte{10, 230, 1, byte(10 + i)})
		mac := bnMAC(ip)
		var tFDB, tNeigh time.Time
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) && (tFDB.IsZero() || tNeigh.IsZero()) {
				if tFDB.IsZero() {
					if m, _, err := kB.fdb(); err == nil && m[mac] {
						tFDB = time.Now()
					}
				}
				if tNeigh.IsZero() {
					if m, err := kB.neigh(); err == nil && m[ip.String()] {
						tNeigh = time.Now()
					}
				}
				time.Sleep(time.Millisecond)
			}
		}()
		waitPing := bnPingUntil(t, sbB, ip, 20*time.Second)
		name := fmt.Sprintf("x%d", i)
		t0 := time.Now()
		if _, err := apiA.run(name, "bnov", ip); err != nil {
			t.Fatal(err)
		}
		tRet := time.Now()
		tPing, ok := waitPing()
		<-polled
		if !ok || tFDB.IsZero() || tNeigh.IsZero() {
			t.Fatalf("iteration %d: %s on A: ping from B ok=%v, FDB on B at %v, neighbour at %v", i, ip, ok, tFDB, tNeigh)
		}
		runLat = append(runLat, tRet.Sub(t0))
		pingFromStart, pingFromRet = append(pingFromStart, tPing.Sub(t0)), append(pingFromRet, tPing.Sub(tRet))
		fdbFromRet, neighFromRet = append(fdbFromRet, tFDB.Sub(tRet)), append(neighFromRet, tNeigh.Sub(tRet))
		if tAdv, ok := watch.get(ip.String(), 2*time.Second); ok {
			fdbFromAdv, neighFromAdv = append(fdbFromAdv, tFDB.Sub(tAdv)), append(neighFromAdv, tNeigh.Sub(tAdv))
			bothFromAdv = append(bothFromAdv, max(tFDB.Sub(tAdv), tNeigh.Sub(tAdv)))
			advFromStart = append(advFromStart, tAdv.Sub(t0))
		}
		tRm := time.Now()
		if err := apiA.rm(name); err != nil {
			t.Fatal(err)
		}
		if !bnPoll(20*time.Second, time.Millisecond, func() bool { m, _, err := kB.fdb(); return err == nil && !m[mac] }) {
			t.Fatalf("iteration %d: %s removed on A still in B's FDB after 20 s", i, mac)
		}
		goneFromRm = append(goneFromRm, time.Since(tRm))
	}
	bnPrint(t, "Overlay (2 hosts, steady state): container on A -> reachable from B", bnLatencyHeader, [][]string{
		bnLatencyRow("run -d on A (API create+start)", runLat),
		bnLatencyRow("run -d sent on A -> first ping reply on B", pingFromStart),
		bnLatencyRow("run -d returned on A -> first ping reply on B", pingFromRet),
		bnLatencyRow("run -d sent on A -> advert seen by an etcd watcher", advFromStart),
		bnLatencyRow("advert seen -> FDB entry on B", fdbFromAdv),
		bnLatencyRow("advert seen -> neighbour entry on B", neighFromAdv),
		bnLatencyRow("advert seen -> both entries on B", bothFromAdv),
		bnLatencyRow("FDB entry on B, relative to run -d returned on A (negative: before)", fdbFromRet),
		bnLatencyRow("neighbour entry on B, relative to run -d returned on A", neighFromRet),
		bnLatencyRow("rm -f sent on A -> FDB entry gone on B", goneFromRm),
	})

	// Throughput: underlay, a VXLAN path of the same shape built by hand,
	// and the vxnet overlay (container to container).
	hand := bnHandVXLAN(t, c)
	var under, raw, over float64
	for r := 0; r < rounds; r++ {
		under += bnIperf(t, B.Netns, A.Netns, B.Addr.String(), secs) / float64(rounds)
		raw += bnIperf(t, hand[1], hand[0], "198.51.100.2", secs) / float64(rounds)
		over += bnIperf(t, sbB, sbA, probeIP.String(), secs) / float64(rounds)
	}
	g := func(bps float64) string { return fmt.Sprintf("%.2f", bps/1e9) }
	bnPrint(t, fmt.Sprintf("Overlay: iperf3 TCP single stream, %d s, A -> B (Gbit/s received, mean of %d round(s), paths interleaved)", secs, rounds),
		[]string{"path", "Gbit/s", "/ underlay", "/ hand-built VXLAN"}, [][]string{
			{"underlay: host A netns -> host B netns (MTU 1500)", g(under), "1.00", fmt.Sprintf("%.2f", under/raw)},
			{"hand-built VXLAN, same shape (netns+bridge+veth, MTU 1450)", g(raw), fmt.Sprintf("%.2f", raw/under), "1.00"},
			{"vxnet overlay: container A -> container B", g(over), fmt.Sprintf("%.2f", over/under), fmt.Sprintf("%.2f", over/raw)},
		})
}

// bnHandVXLAN builds, with ip(8), the overlay's shape between hosts 0 and
// 1 without vxnet: in each host namespace a VXLAN device (VNI 4242, UDP
// 4790 so vxnet's firewall on 4789 does not apply, point-to-point to the
// other host) moved into a namespace of its own with a bridge, and a veth
// from that bridge to a "container" namespace holding 198.51.100.(1|2)/24.
// It returns the two container namespace paths.
func bnHandVXLAN(t *testing.T, c *harness.Cluster) [2]string {
	t.Helper()
	prefix := bnPrefix()
	var out [2]string
	for i := 0; i < 2; i++ {
		h, peer := c.Host(i), c.Host(1-i)
		ovl, ctr := fmt.Sprintf("%s-vx%d", prefix, i), fmt.Sprintf("%s-vc%d", prefix, i)
		for _, ns := range []string{ovl, ctr} {
			bnIP(t, "netns", "add", ns)
			t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		}
		h.MustExec(t, "ip", "link", "add", "bnvx", "type", "vxlan", "id", "4242", "local", h.Addr.String(),
			"remote", peer.Addr.String(), "dstport", "4790", "dev", "eth0")
		h.MustExec(t, "ip", "link", "set", "bnvx", "netns", ovl)
		bnIP(t, "-n", ovl, "link", "add", "br0", "type", "bridge")
		bnIP(t, "-n", ovl, "link", "set", "bnvx", "master", "br0", "up")
		bnIP(t, "-n", ovl, "link", "add", "veth0", "mtu", "1450", "type", "veth", "peer", "name", "eth0", "mtu", "1450", "netns", ctr)
		bnIP(t, "-n", ovl, "link", "set", "veth0", "master", "br0", "up")
		bnIP(t, "-n", ovl, "link", "set", "br0", "up")
		bnIP(t, "-n", ctr, "addr", "add", fmt.Sprintf("198.51.100.%d/24", i+1), "dev", "eth0")
		bnIP(t, "-n", ctr, "link", "set", "eth0", "up")
		bnIP(t, "-n", ctr, "link", "set", "lo", "up")
		out[i] = "/run/netns/" + ctr
	}
	if o, err := exec.Command("nsenter", "--net="+out[0], "ping", "-c1", "-w5", "198.51.100.2").CombinedOutput(); err != nil {
		t.Fatalf("hand-built VXLAN does not pass a ping: %v: %s", err, o)
	}
	return out
}

// bnIperf runs an iperf3 server (one test) in namespace srv and a client
// in cli towards dst for secs seconds; it returns the received bits/s.
// iperf3 is the machine's binary, run inside the namespaces with nsenter.
func bnIperf(t *testing.T, srv, cliNS, dst string, secs int) float64 {
	t.Helper()
	return bnIperfPort(t, srv, cliNS, dst, 5201, 5201, secs)
}

// bnIperfPort is bnIperf with the server listening on port and the client
// connecting to dstPort (different when a published port is in between).
func bnIperfPort(t *testing.T, srv, cliNS, dst string, port, dstPort, secs int) float64 {
	t.Helper()
	server := exec.Command("nsenter", "--net="+srv, "iperf3", "-s", "-1", "-p", fmt.Sprint(port))
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	defer func() {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			server.Process.Kill()
			<-done
		}
	}()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	for try := 0; ; try++ {
		out, _ := exec.Command("nsenter", "--net="+cliNS, "iperf3", "-c", dst, "-p", fmt.Sprint(dstPort), "-t", fmt.Sprint(secs), "-J").Output()
		res.Error = ""
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("iperf3 to %s: %v: %s", dst, err, out)
		}
		if res.Error == "" {
			break
		}
		if try >= 50 {
			t.Fatalf("iperf3 to %s: %s", dst, res.Error)
		}
		time.Sleep(100 * time.Millisecond) // the server is not listening yet
	}
	return res.End.SumReceived.BitsPerSecond
}

// TestBenchOverlayScale: H hosts (3 etcd voters, the rest clients) with C
// containers each on one overlay network: time until every host's FDB
// holds every remote MAC, entries per host, daemon memory.
func TestBenchOverlayScale(t *testing.T) {
	bnGate(t)
	nh := bnEnv(t, "VXNET_BENCH_SCALE_HOSTS", 20)
	nc := bnEnv(t, "VXNET_BENCH_SCALE_CTRS", 25)
	if nh > 200 || nc > 240 {
		t.Fatalf("at most 200 hosts and 240 containers per host")
	}
	c := harness.New(t, harness.Options{Hosts: nh, DaemonArgs: bnOverlayHosts(nh)})
	t0 := time.Now()
	for _, h := range c.Hosts {
		h.Start()
	}
	startAll := time.Since(t0)
	apis := make([]*bnAPI, nh)
	for i, h := range c.Hosts {
		apis[i] = bnClient(h)
	}
	apis[0].createOverlay(t, "bnscale", "10.240.0.0/16")
	for _, a := range apis {
		if !bnPoll(30*time.Second, 20*time.Millisecond, func() bool { code, _ := a.do("GET", "/networks/bnscale", nil, nil); return code == 200 }) {
			t.Fatalf("bnscale not visible on %s", a.h.Name)
		}
	}

	// Every host starts its containers one after another, all hosts at once.
	ipOf := func(hi, j int) netip.Addr { return netip.AddrFrom4([4]byte{10, 240, byte(hi), byte(10 + j)}) }
	var wg sync.WaitGroup
	var mu sync.Mutex
	var lat []time.Duration
	var failed []string
	ok := make([][]bool, nh)
	started := make([]bool, nh) // some container of the host is running
	tRun := time.Now()
	var tLast time.Time
	for hi := range apis {
		ok[hi] = make([]bool, nc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < nc; j++ {
				s := time.Now()
				_, err := apis[hi].run(fmt.Sprintf("s%d", j), "bnscale", ipOf(hi, j))
				mu.Lock()
				if err != nil {
					failed = append(failed, err.Error())
				} else {
					ok[hi][j], started[hi] = true, true
					lat = append(lat, time.Since(s))
				}
				mu.Unlock()
			}
		}()
	}
	runsDone := make(chan struct{})
	go func() { wg.Wait(); tLast = time.Now(); close(runsDone) }()

	// Meanwhile and after, poll every host's overlay FDB (every 50 ms) and
	// note when each MAC first appeared there. A host has converged when
	// it holds every remote MAC of a container that started.
	kernels := make([]*bnKernel, nh)
	t.Cleanup(func() {
		for _, k := range kernels {
			if k != nil {
				k.h.Close()
			}
		}
	})
	seen := make([]map[string]time.Time, nh)
	entries := make([]int, nh)
	neighs := make([]int, nh)
	want := func(hi int) []string {
		var out []string
		for o := range nh {
			for j := range nc {
				if o != hi && ok[o][j] {
					out = append(out, bnMAC(ipOf(o, j)))
				}
			}
		}
		return out
	}
	complete := func(hi int) bool {
		for _, mac := range want(hi) {
			if _, found := seen[hi][mac]; !found {
				return false
			}
		}
		return true
	}
	finished := false
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		if !finished {
			select {
			case <-runsDone:
				finished = true
				deadline = time.Now().Add(10 * time.Minute)
			default:
			}
		}
		all := finished
		for hi := range kernels {
			if kernels[hi] == nil {
				mu.Lock()
				st := started[hi]
				mu.Unlock()
				if st {
					if k, err := bnTryKernel(apis[hi].overlayNS(t, "bnscale")); err == nil {
						kernels[hi], seen[hi] = k, map[string]time.Time{}
					}
				}
				if kernels[hi] == nil {
					all = false
					continue
				}
			}
			m, cnt, err := kernels[hi].fdb()
			if err != nil {
				all = false
				continue
			}
			now := time.Now()
			for mac := range m {
				if _, found := seen[hi][mac]; !found {
					seen[hi][mac] = now
				}
			}
			if finished {
				entries[hi] = cnt
				nm, _ := kernels[hi].neigh()
				neighs[hi] = len(nm)
			}
			if !finished || !complete(hi) {
				all = false
			}
		}
		if all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !finished {
		t.Fatalf("containers still starting after 30 min")
	}
	if len(failed) > 0 {
		t.Errorf("%d of %d containers failed to start; first: %s", len(failed), nh*nc, failed[0])
	}
	var convAt time.Time // when the last host got its last remote MAC
	notConverged := 0
	for hi := range nh {
		if kernels[hi] == nil || !complete(hi) {
			notConverged++
			continue
		}
		for _, mac := range want(hi) {
			if seen[hi][mac].After(convAt) {
				convAt = seen[hi][mac]
			}
		}
	}
	if notConverged > 0 {
		t.Errorf("%d of %d hosts not converged 10 min after the last container started", notConverged, nh)
	}
	// A ping across the cluster, last host to host 0, as a sanity check.
	pingOK := "not run"
	if ok[nh-1][nc-1] && ok[0][0] {
		sb := apis[nh-1].sandbox(t, fmt.Sprintf("s%d", nc-1))
		pingOK = "ok"
		if out, err := exec.Command("nsenter", "--net="+sb, "ping", "-c1", "-w5", ipOf(0, 0).String()).CombinedOutput(); err != nil {
			pingOK = "FAILED"
			t.Errorf("ping from the last host to host 0: %v: %s", err, out)
		}
	}
	var voters, clients []float64
	for hi, h := range c.Hosts {
		r := bnRSS(t, h)
		if hi < 3 {
			voters = append(voters, r)
		} else {
			clients = append(clients, r)
		}
	}
	rs := func(v []float64) string {
		if len(v) == 0 {
			return "-"
		}
		sort.Float64s(v)
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f", v[0], sum/float64(len(v)), v[len(v)-1])
	}
	is := func(v []int) string {
		s := append([]int(nil), v...)
		sort.Ints(s)
		return fmt.Sprintf("%d / %d", s[0], s[len(s)-1])
	}
	total := nh*nc - len(failed)
	convStr := func(d time.Duration) string {
		if notConverged > 0 {
			return fmt.Sprintf("not reached (%d of %d hosts incomplete)", notConverged, nh)
		}
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	bnPrint(t, fmt.Sprintf("Overlay scale: %d hosts x %d containers on one overlay network", nh, nc), []string{"what", "value"}, [][]string{
		{"hosts (etcd voters + clients)", fmt.Sprintf("%d (%d + %d)", nh, min(3, nh), max(0, nh-3))},
		{"daemons started one after another", fmt.Sprintf("%.1f s", startAll.Seconds())},
		{"containers started (all hosts at once, each host serially)", fmt.Sprintf("%d in %.1f s = %.1f/s", total, tLast.Sub(tRun).Seconds(), float64(total)/tLast.Sub(tRun).Seconds())},
		{"run -d (API) latency p50 / p99", bnMS(bnSummary(lat).P50) + " / " + bnMS(bnSummary(lat).P99) + " ms"},
		{"last run -d returned -> every host has every remote MAC (negative: before)", convStr(convAt.Sub(tLast))},
		{"first run -d sent -> full convergence", convStr(convAt.Sub(tRun))},
		{"FDB entries with a VTEP per host (remote MACs + one per remote VTEP), min / max", is(entries)},
		{"neighbour entries per host, min / max", is(neighs)},
		{"daemon RSS MiB, etcd voters, min / avg / max", rs(voters)},
		{"daemon RSS MiB, clients, min / avg / max", rs(clients)},
		{"ping last host -> host 0", pingOK},
	})
}
