package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/leakcheck"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/pki"
)

// Benchmarks (bench_test.go) are tests gated by $VXNET_BENCH: they measure
// and print, they never assert timings. scripts/bench.sh runs them.

func bnGate(t *testing.T) {
	t.Helper()
	if os.Getenv("VXNET_BENCH") == "" {
		t.Skip("benchmark: set VXNET_BENCH=1 (scripts/bench.sh)")
	}
}

// bnPrefix is a unique prefix for namespace names the benchmarks make
// themselves, carrying the leak check marker.
func bnPrefix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return leakcheck.Marker() + "bn" + hex.EncodeToString(b)
}

// bnEnv returns the integer in $name, or def.
func bnEnv(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		t.Fatalf("$%s=%q: want a positive integer", name, s)
	}
	return n
}

// bnDaemonArgs are the arguments every benchmark daemon gets on top of the
// harness's: info logging (the harness's debug log costs disk writes on
// every request), or $VXNET_BENCH_LOG.
var bnDaemonArgs = []string{"--log-level", cmp.Or(os.Getenv("VXNET_BENCH_LOG"), "info")}

// bnOverlayHosts is the DaemonArgs of an embedded-etcd cluster of the first
// n hosts (host 0 --cluster-init, the others joining it); hosts from n on
// run without cluster mode.
func bnOverlayHosts(n int, extra ...string) func(int, *harness.Host) []string {
	return func(i int, h *harness.Host) []string {
		args := append([]string{}, bnDaemonArgs...)
		if i >= n {
			return args
		}
		args = append(args, "--advertise-addr", h.Addr.String())
		args = append(args, extra...)
		if i == 0 {
			return append(args, "--cluster-init")
		}
		return append(args, h.JoinArgs(0)...)
	}
}

// --- statistics and output ---

// bnStats summarises durations (nearest-rank percentiles).
type bnStats struct {
	N                             int
	Min, P50, P90, P99, Max, Mean time.Duration
}

func bnSummary(ds []time.Duration) bnStats {
	if len(ds) == 0 {
		return bnStats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := func(p float64) time.Duration {
		k := int(p*float64(len(s))+0.999999) - 1
		if k < 0 {
			k = 0
		}
		if k >= len(s) {
			k = len(s) - 1
		}
		return s[k]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return bnStats{N: len(s), Min: s[0], P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1], Mean: sum / time.Duration(len(s))}
}

func bnMS(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// bnPrint prints a markdown table to stdout (bench.sh collects it).
func bnPrint(t *testing.T, title string, header []string, rows [][]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n| %s |\n|", title, strings.Join(header, " | "))
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Print(b.String())
}

// bnLatencyRow is a table row for a latency series.
func bnLatencyRow(name string, ds []time.Duration) []string {
	s := bnSummary(ds)
	return []string{name, fmt.Sprint(s.N), bnMS(s.Min), bnMS(s.P50), bnMS(s.P90), bnMS(s.P99), bnMS(s.Max), bnMS(s.Mean)}
}

var bnLatencyHeader = []string{"what", "n", "min ms", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"}

// bnRatio formats a/b.
func bnRatio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fx", float64(a)/float64(b))
}

// --- the daemon's API over its unix socket ---

type bnAPI struct {
	h *harness.Host
	c *http.Client
}

func bnClient(h *harness.Host) *bnAPI {
	sock := h.Socket
	return &bnAPI{h: h, c: &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			MaxIdleConnsPerHost: 16,
		},
	}}
}

// do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to drop it). It returns the status code.
func (a *bnAPI) do(method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://vxnet"+path, r)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func (a *bnAPI) must(t *testing.T, method, path string, body, out any) {
	t.Helper()
	if _, err := a.do(method, path, body, out); err != nil {
		t.Fatalf("%s: %v", a.h.Name, err)
	}
}

// create makes a busybox "sleep 1d" container on network net (with a
// static address if ip is valid) and returns its ID; start starts it.
func (a *bnAPI) create(name, network string, ip netip.Addr) (string, error) {
	body := map[string]any{
		"Image":      "busybox",
		"Cmd":        []string{"sleep", "1d"},
		"HostConfig": map[string]any{"NetworkMode": network},
	}
	if ip.IsValid() {
		body["NetworkingConfig"] = map[string]any{"EndpointsConfig": map[string]any{
			network: map[string]any{"IPAMConfig": map[string]any{"IPv4Address": ip.String()}},
		}}
	}
	var out struct{ ID string }
	_, err := a.do("POST", "/containers/create?name="+name, body, &out)
	return out.ID, err
}

func (a *bnAPI) start(id string) error {
	_, err := a.do("POST", "/containers/"+id+"/start", nil, nil)
	return err
}

// run is create + start ("run -d" at the API level).
func (a *bnAPI) run(name, network string, ip netip.Addr) (string, error) {
	id, err := a.create(name, network, ip)
	if err != nil {
		return "", err
	}
	return id, a.start(id)
}

func (a *bnAPI) rm(ref string) error {
	_, err := a.do("DELETE", "/containers/"+ref+"?force=1", nil, nil)
	return err
}

// sandbox returns a container's network namespace path (SandboxKey).
func (a *bnAPI) sandbox(t *testing.T, ref string) string {
	t.Helper()
	var v struct{ NetworkSettings struct{ SandboxKey string } }
	a.must(t, "GET", "/containers/"+ref+"/json", nil, &v)
	if v.NetworkSettings.SandboxKey == "" {
		t.Fatalf("%s: container %s has no SandboxKey", a.h.Name, ref)
	}
	return v.NetworkSettings.SandboxKey
}

// overlayNS returns the overlay namespace path of a network on this host
// (inspect -v), "" if it has none yet.
func (a *bnAPI) overlayNS(t *testing.T, network string) string {
	t.Helper()
	var v struct{ VXNet struct{ Namespace string } }
	a.must(t, "GET", "/networks/"+network+"?verbose=true", nil, &v)
	return v.VXNet.Namespace
}

// createOverlay makes an overlay network and returns its ID.
func (a *bnAPI) createOverlay(t *testing.T, name, subnet string) string {
	t.Helper()
	body := map[string]any{"Name": name, "Driver": "overlay"}
	if subnet != "" {
		body["IPAM"] = map[string]any{"Config": []map[string]string{{"Subnet": subnet}}}
	}
	var out struct{ ID string }
	a.must(t, "POST", "/networks/create", body, &out)
	return out.ID
}

// --- processes and memory ---

// bnDaemonPID finds the daemon process of h by its socket argument.
func bnDaemonPID(t *testing.T, h *harness.Host) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "daemon -H unix://"+h.Socket+" ").Output()
	if err != nil {
		t.Fatalf("%s: pgrep daemon: %v", h.Name, err)
	}
	f := strings.Fields(string(out))
	if len(f) != 1 {
		t.Fatalf("%s: pgrep daemon: want one pid, got %q", h.Name, out)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// bnRSS returns the daemon's VmRSS in MiB.
func bnRSS(t *testing.T, h *harness.Host) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", bnDaemonPID(t, h)))
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	t.Fatalf("%s: no VmRSS", h.Name)
	return 0
}

// --- kernel observation through namespace-bound netlink handles ---

// bnKernel reads vxlan0's FDB and neighbour entries in an overlay namespace.
type bnKernel struct {
	h   *netlink.Handle
	idx int
}

func bnOpenKernel(t *testing.T, nsPath string) *bnKernel {
	t.Helper()
	k, err := bnTryKernel(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.h.Close)
	return k
}

// bnTryKernel opens the handle; the caller closes k.h.
func bnTryKernel(nsPath string) (*bnKernel, error) {
	h, err := netns.Handle(nsPath)
	if err != nil {
		return nil, fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	l, err := h.LinkByName("vxlan0")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("vxlan0 in %s: %w", nsPath, err)
	}
	return &bnKernel{h: h, idx: l.Attrs().Index}, nil
}

// fdb returns the MACs with a remote destination (the vxlan's own
// entries, not what br0 learned) and the number of all FDB entries with a
// destination, BUM entries included.
func (k *bnKernel) fdb() (map[string]bool, int, error) {
	ns, err := k.h.NeighList(k.idx, unix.AF_BRIDGE)
	if err != nil {
		return nil, 0, err
	}
	m := map[string]bool{}
	n := 0
	for _, e := range ns {
		if e.LinkIndex != k.idx || e.IP == nil {
			continue
		}
		n++
		m[e.HardwareAddr.String()] = true
	}
	return m, n, nil
}

// neigh returns the IPs with a neighbour entry on vxlan0.
func (k *bnKernel) neigh() (map[string]bool, error) {
	ns, err := k.h.NeighList(k.idx, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for _, e := range ns {
		if e.LinkIndex == k.idx && e.HardwareAddr != nil {
			m[e.IP.String()] = true
		}
	}
	return m, nil
}

// --- worker subprocesses inside a host namespace ---
//
// A Go etcd client opened in the test process would dial from background
// goroutines on threads of the root namespace, which cannot reach the
// underlay. So the test binary runs itself under nsenter --net=<host> in a
// worker mode chosen by $VXNET_BN_WORKER, decided in init (before TestMain
// and before any test runs).

func init() {
	switch os.Getenv("VXNET_BN_WORKER") {
	case "":
		return
	case "alloc":
		os.Exit(bnAllocWorker())
	case "watch":
		os.Exit(bnWatchWorker())
	default:
		fmt.Fprintln(os.Stderr, "unknown VXNET_BN_WORKER")
		os.Exit(2)
	}
}

// bnAllocResult is what an alloc worker prints (as "RESULT <json>").
type bnAllocResult struct {
	Durs     []time.Duration
	Addrs    []string
	Errs     int
	FirstErr string
	Wall     time.Duration
}

// bnAllocWorker opens a cluster client on $VXNET_BN_ETCD, prints READY,
// waits for a line on stdin, then makes $VXNET_BN_N AllocateAddress calls
// on network $VXNET_BN_NET with $VXNET_BN_PAR goroutines.
func bnAllocWorker() int {
	n, _ := strconv.Atoi(os.Getenv("VXNET_BN_N"))
	par, _ := strconv.Atoi(os.Getenv("VXNET_BN_PAR"))
	if par <= 0 {
		par = 1
	}
	netID := os.Getenv("VXNET_BN_NET")
	addr, err := netip.ParseAddr(os.Getenv("VXNET_BN_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "alloc worker:", err)
		return 2
	}
	id := make([]byte, 16)
	rand.Read(id)
	ctx := context.Background()
	opts := cluster.Options{
		NodeID: hex.EncodeToString(id), Hostname: "bn-alloc-" + addr.String(), AdvertiseAddr: addr,
		Endpoints: []string{os.Getenv("VXNET_BN_ETCD")}, RequestTimeout: 30 * time.Second,
	}
	if d := os.Getenv("VXNET_BN_TLS"); d != "" {
		opts.CAFile, opts.CertFile, opts.KeyFile = filepath.Join(d, "ca.crt"), filepath.Join(d, "client.crt"), filepath.Join(d, "client.key")
	}
	cl, err := cluster.Open(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "alloc worker: open:", err)
		return 1
	}
	defer cl.Close()
	fmt.Println("READY")
	bufio.NewReader(os.Stdin).ReadString('\n')
	res := bnAllocResult{Durs: make([]time.Duration, n), Addrs: make([]string, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := 0
	start := time.Now()
	for g := 0; g < par; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				t0 := time.Now()
				p, err := cl.AllocateAddress(ctx, netID, netip.Addr{})
				d := time.Since(t0)
				mu.Lock()
				res.Durs[i] = d
				if err != nil {
					res.Errs++
					if res.FirstErr == "" {
						res.FirstErr = err.Error()
					}
				} else {
					res.Addrs[i] = p.Addr().String()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Wall = time.Since(start)
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
	return 0
}

// bnWatchWorker watches the advertisements under the cluster prefix on
// $VXNET_BN_ETCD and prints "ADV <unix ns> <IP>" for every put, after
// "READY" once the watch is in place. It ends when stdin closes.
func bnWatchWorker() int {
	cfg := clientv3.Config{Endpoints: []string{os.Getenv("VXNET_BN_ETCD")}, DialTimeout: 10 * time.Second}
	if d := os.Getenv("VXNET_BN_TLS"); d != "" {
		tc, err := transport.TLSInfo{TrustedCAFile: filepath.Join(d, "ca.crt"), CertFile: filepath.Join(d, "client.crt"), KeyFile: filepath.Join(d, "client.key")}.ClientConfig()
		if err != nil {
			fmt.Fprintln(os.Stderr, "watch worker:", err)
			return 1
		}
		cfg.TLS, cfg.Endpoints = tc, []string{"https://" + cfg.Endpoints[0]}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watch worker:", err)
		return 1
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	wc := cli.Watch(ctx, cluster.DefaultPrefix+"/adverts/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	out := bufio.NewWriter(os.Stdout)
	for resp := range wc {
		now := time.Now().UnixNano()
		if resp.Created {
			fmt.Fprintln(out, "READY")
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue
			}
			var a struct{ IP string }
			json.Unmarshal(ev.Kv.Value, &a)
			fmt.Fprintf(out, "ADV %d %s\n", now, a.IP)
		}
		out.Flush()
	}
	return 0
}

// bnEtcdEnv is the environment of a worker talking to host h's embedded
// etcd: its address and, unless plain, a directory with the cluster CA and
// a root certificate minted from h's CA key (h must be a voting member).
func bnEtcdEnv(t *testing.T, c *harness.Cluster, h *harness.Host, plain bool) []string {
	t.Helper()
	env := []string{"VXNET_BN_ETCD=" + h.Addr.String() + ":2379"}
	if plain {
		return env
	}
	ca, err := pki.Dir(filepath.Join(h.DataRoot, "cluster")).LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.Issue(&key.PublicKey, pki.RootUser, nil, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	d := pki.Dir(filepath.Join(c.Dir, "bn-tls-"+h.Name))
	for name, b := range map[string][]byte{"ca.crt": ca.CertPEM, "client.crt": certPEM, "client.key": keyPEM} {
		if err := d.WriteFile(name, b); err != nil {
			t.Fatal(err)
		}
	}
	return append(env, "VXNET_BN_TLS="+string(d))
}

// bnWorker is a running worker subprocess.
type bnWorker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	done  chan struct{}
}

// bnStartWorker starts the test binary in worker mode inside h's
// namespace and waits (up to 30 s) for its READY line. The cluster
// directory is on its command line, so the harness teardown would find it.
func bnStartWorker(t *testing.T, c *harness.Cluster, h *harness.Host, env ...string) *bnWorker {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+h.Netns, "--", self, "-test.run=^$", "bn-worker", c.Dir)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	w := &bnWorker{cmd: cmd, stdin: stdin, lines: make(chan string, 1<<16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		cmd.Wait()
		close(w.lines)
		close(w.done)
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-w.done
		}
	})
	select {
	case l, ok := <-w.lines:
		if !ok || l != "READY" {
			t.Fatalf("worker on %s: want READY, got %q (exited: %v)", h.Name, l, !ok)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("worker on %s: not ready after 30 s", h.Name)
	}
	return w
}

// result waits (up to d) for the worker's RESULT line and decodes it.
func (w *bnWorker) result(t *testing.T, d time.Duration, out any) {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("worker exited without a result")
			}
			if rest, found := strings.CutPrefix(l, "RESULT "); found {
				if err := json.Unmarshal([]byte(rest), out); err != nil {
					t.Fatalf("worker result: %v", err)
				}
				return
			}
		case <-timeout:
			t.Fatalf("worker: no result after %v", d)
		}
	}
}
