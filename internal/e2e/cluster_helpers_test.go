package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// clusterTTL is the node TTL of the cluster tests: short, so that a dead
// host is noticed quickly.
const clusterTTL = 2 * time.Second

// clusterEmbedded starts three hosts forming an embedded etcd cluster:
// host 0 with --cluster-init, hosts 1 and 2 joining it. Every daemon runs.
func clusterEmbedded(t *testing.T) *harness.Cluster {
	t.Helper()
	c := harness.New(t, harness.Options{Hosts: 3, DaemonArgs: func(i int, h *harness.Host) []string {
		args := []string{"--advertise-addr", h.Addr.String(), "--node-ttl", clusterTTL.String(), "--resync-interval", "5s"}
		if i == 0 {
			return append(args, "--cluster-init")
		}
		return append(args, h.JoinArgs(0)...)
	}})
	for _, h := range c.Hosts {
		h.Start()
	}
	// The joining hosts are learners until the first voter promotes them
	// both (voters go 1 -> 3, never 2).
	waitRoles(t, c.Host(0), 3, 0)
	return c
}

// waitRoles waits until node ls on h shows voters voters and learners
// learners.
func waitRoles(t *testing.T, h *harness.Host, voters, learners int) {
	t.Helper()
	var got map[string]int
	if !eventually(30*time.Second, func() bool {
		got = map[string]int{}
		for _, n := range nodes(t, h) {
			got[n.Role]++
		}
		return got["voter"] == voters && got["learner"] == learners
	}) {
		t.Fatalf("node ls on %s: roles %v, want %d voters and %d learners", h.Name, got, voters, learners)
	}
}

// clusterExternal starts a real etcd (Debian's /usr/bin/etcd) inside host
// 0's namespace, listening for clients on host 0's underlay address, and
// three daemons using it as their external cluster store. etcd's data
// directory is under the cluster directory, so its command line carries
// the leak check marker and the harness teardown would find it; it is
// killed in a Cleanup that runs before the harness teardown.
func clusterExternal(t *testing.T) *harness.Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		testreq.Skip(t, "needs etcd (Debian's etcd-server)")
	}
	store := "etcd://192.0.2.10:2379"
	var tlsFiles storeTLS
	c := harness.New(t, harness.Options{Hosts: 3, DaemonArgs: func(i int, h *harness.Host) []string {
		return append([]string{"--cluster-store", store, "--advertise-addr", h.Addr.String(),
			"--node-ttl", clusterTTL.String(), "--resync-interval", "5s"}, tlsFiles.daemonArgs()...)
	}})
	h0 := c.Host(0)
	tlsFiles = makeStoreTLS(t, filepath.Join(c.Dir, "etcd-tls"), h0.Addr)
	dataDir := filepath.Join(c.Dir, "etcd")
	logf, err := os.Create(filepath.Join(c.Dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	// The peer URL only needs to be unique inside host 0's namespace.
	args := append([]string{"--net=" + h0.Netns, "--", bin,
		"--name", "e2e", "--data-dir", dataDir,
		"--listen-client-urls", "https://192.0.2.10:2379",
		"--advertise-client-urls", "https://192.0.2.10:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380",
		"--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "e2e=http://127.0.0.1:2380"}, tlsFiles.etcdArgs()...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start etcd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("etcd pid %d not gone 10 s after SIGKILL", cmd.Process.Pid)
		}
	})
	// Wait for etcd to answer on its client port (bounded).
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, code := h0.Exec("bash", "-c", "exec 3<>/dev/tcp/192.0.2.10/2379"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(c.Dir, "etcd.log"))
			t.Fatalf("etcd not listening after 20 s; log:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, h := range c.Hosts {
		h.Start()
	}
	return c
}

// networkID returns the full ID of a network as host h sees it, or "" if
// h does not list it.
func networkID(t *testing.T, h *harness.Host, name string) string {
	t.Helper()
	out := cli(t, h, "network", "ls", "--no-trunc")
	for _, l := range strings.Split(out, "\n")[1:] {
		f := strings.Fields(l)
		if len(f) >= 2 && f[1] == name {
			return f[0]
		}
	}
	return ""
}

// netView is the part of "network inspect" the cluster tests look at.
type netView struct {
	ID     string `json:"Id"`
	Name   string
	Driver string
	Scope  string
}

// inspectNetwork returns "network inspect NAME" on h.
func inspectNetwork(t *testing.T, h *harness.Host, name string) netView {
	t.Helper()
	var v []netView
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", name)), &v); err != nil || len(v) != 1 {
		t.Fatalf("network inspect %s on %s: %v (%d results)", name, h.Name, err, len(v))
	}
	return v[0]
}

// node is one row of "vxnet node ls".
type node struct {
	ID, Hostname, Addr, State, Role string
	Self                            bool
}

var colSep = regexp.MustCompile(`\s{2,}`)

// nodes parses "vxnet node ls" on h, keyed by (12-character) ID.
func nodes(t *testing.T, h *harness.Host) map[string]node {
	t.Helper()
	out := cli(t, h, "node", "ls")
	lines := strings.Split(out, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("node ls on %s: no header: %q", h.Name, out)
	}
	m := map[string]node{}
	for _, l := range lines[1:] {
		f := colSep.Split(strings.TrimSpace(l), -1)
		if len(f) < 5 {
			t.Fatalf("node ls on %s: bad row %q in\n%s", h.Name, l, out)
		}
		n := node{ID: f[0], Hostname: f[1], Addr: f[2], State: f[3]}
		if len(f) >= 6 {
			n.Role = f[5]
		}
		if id, ok := strings.CutSuffix(n.ID, " *"); ok {
			n.ID, n.Self = id, true
		}
		m[n.ID] = n
	}
	return m
}

// selfID returns host h's own node ID (as node ls prints it).
func selfID(t *testing.T, h *harness.Host) string {
	t.Helper()
	for id, n := range nodes(t, h) {
		if n.Self {
			return id
		}
	}
	t.Fatalf("node ls on %s: no row marked as this node", h.Name)
	return ""
}

// createRace runs "network create -d overlay NAME" on two hosts at the same
// moment and checks exactly one succeeds while the other fails with exit
// code 1 and "already exists".
func createRace(t *testing.T, a, b *harness.Host, name string) {
	t.Helper()
	type result struct {
		out, errOut string
		code        int
	}
	var res [2]result
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, h := range []*harness.Host{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out, errOut, code := h.CLI("network", "create", "-d", "overlay", name)
			res[i] = result{out, errOut, code}
		}()
	}
	close(start)
	wg.Wait()
	ok, failed := 0, -1
	for i, r := range res {
		if r.code == 0 {
			ok++
		} else {
			failed = i
		}
	}
	if ok != 1 {
		t.Fatalf("concurrent create of %s on two hosts: %d succeeded, want exactly one: %+v", name, ok, res)
	}
	r := res[failed]
	if r.code != 1 || !strings.Contains(r.errOut, fmt.Sprintf("network with name %s already exists", name)) {
		t.Errorf("the losing create: exit %d, stderr %q; want exit 1 and %q", r.code, r.errOut, "network with name "+name+" already exists")
	}
}

// apiClient returns an HTTP client talking to host h's daemon socket.
func apiClient(h *harness.Host) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", h.Socket)
			},
		},
	}
}

// apiCreate creates (without starting) a busybox container on network
// netName through the Docker API of h: the container's endpoint and
// address are made at create time, without the cost of starting a
// process.
func apiCreate(cl *http.Client, name, netName string) error {
	body := fmt.Sprintf(`{"Image":"busybox","Cmd":["sleep","1d"],"HostConfig":{"NetworkMode":%q}}`, netName)
	resp, err := cl.Post("http://vxnet/containers/create?name="+url.QueryEscape(name), "application/json", strings.NewReader(body))
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create %s: %s: %s", name, resp.Status, b)
	}
	return nil
}

// endpointAddrs returns the addresses of the local endpoints of a network
// on h (from network inspect), keyed by container name.
func endpointAddrs(t *testing.T, h *harness.Host, netName string) map[string]string {
	t.Helper()
	var v []struct {
		Containers map[string]struct{ Name, IPv4Address string }
	}
	if err := json.Unmarshal([]byte(cli(t, h, "network", "inspect", netName)), &v); err != nil || len(v) != 1 {
		t.Fatalf("network inspect %s on %s: %v", netName, h.Name, err)
	}
	m := map[string]string{}
	for _, c := range v[0].Containers {
		m[c.Name] = strings.SplitN(c.IPv4Address, "/", 2)[0]
	}
	return m
}

// overlayView is the "VXNet" section of "network inspect -v".
type overlayView struct {
	Peers []struct {
		IP, MAC, VTEP, Node, Status string
	}
	KernelFDB, KernelNeigh []string
}

// overlayState returns the VXNet section of "network inspect -v NAME" on h.
// It is safe to call from any goroutine (it does not fail the test).
func overlayState(h *harness.Host, name string) (overlayView, error) {
	out, errOut, code := h.CLI("network", "inspect", "-v", name)
	if code != 0 {
		return overlayView{}, fmt.Errorf("network inspect -v %s on %s: exit %d: %s", name, h.Name, code, errOut)
	}
	var v []struct{ VXNet *overlayView }
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 || v[0].VXNet == nil {
		return overlayView{}, fmt.Errorf("network inspect -v %s on %s: no VXNet section (%v): %s", name, h.Name, err, out)
	}
	return *v[0].VXNet, nil
}

// containerNetns returns the path of a container's network namespace on h
// (<exec-root>/netns/<first 12 characters of its ID>).
func containerNetns(t *testing.T, h *harness.Host, ctr string) string {
	t.Helper()
	var v []struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal([]byte(cli(t, h, "inspect", ctr)), &v); err != nil || len(v) != 1 || len(v[0].ID) < 12 {
		t.Fatalf("inspect %s on %s: %v", ctr, h.Name, err)
	}
	p := filepath.Join(h.ExecRoot, "netns", v[0].ID[:12])
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("network namespace of %s on %s: %v", ctr, h.Name, err)
	}
	return p
}
