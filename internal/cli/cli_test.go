package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/model"
)

// daemon is an API server on a unix socket in front of a real engine on
// fake drivers and runtime (enginetest); reqs counts the requests that
// reached it, by method and path without the version prefix.
type daemon struct {
	t    *testing.T
	sock string
	env  *enginetest.Env
	reqs *requests
}

// requests counts the API requests a daemon received.
type requests struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *requests) count(method, path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[method+" "+path]
}

func (r *requests) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.n {
		n += c
	}
	return n
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+/`)

func (r *requests) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.n[req.Method+" "+versionPrefix.ReplaceAllString(req.URL.Path, "/")]++
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	})
}

func startDaemon(t *testing.T, b api.Backend) string {
	return startDaemonCounting(t, b, nil)
}

func startDaemonCounting(t *testing.T, b api.Backend, reqs *requests) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vxcli")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := api.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	h := api.NewServer(b, api.Options{Version: "test"})
	if reqs != nil {
		h = reqs.wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func newDaemon(t *testing.T) *daemon {
	env := enginetest.New(t)
	reqs := &requests{n: map[string]int{}}
	return &daemon{t: t, sock: startDaemonCounting(t, env.Engine, reqs), env: env, reqs: reqs}
}

type result struct {
	code           int
	stdout, stderr string
}

func (d *daemon) runIn(stdin string, args ...string) result {
	d.t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := Execute(ctx, NewRootCommand(), append([]string{"-H", "unix://" + d.sock}, args...), strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func (d *daemon) run(args ...string) result {
	d.t.Helper()
	return d.runIn("", args...)
}

// ok runs a command that must succeed and returns its stdout.
func (d *daemon) ok(args ...string) string {
	d.t.Helper()
	r := d.run(args...)
	if r.code != 0 {
		d.t.Fatalf("vxnet %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

var hexID = regexp.MustCompile(`^[0-9a-f]{64}\n$`)

func TestNetworkLifecycle(t *testing.T) {
	d := newDaemon(t)
	id := d.ok("network", "create", "--subnet", "192.0.2.0/24", "--gateway", "192.0.2.1", "--ip-range", "192.0.2.128/25",
		"--aux-address", "router=192.0.2.2", "--label", "team=net", "--label", "flag", "-o", "com.docker.network.driver.mtu=1400",
		"--internal", "--attachable", "front")
	if !hexID.MatchString(id) {
		t.Fatalf("create printed %q, want an ID", id)
	}
	id = strings.TrimSpace(id)

	ls := d.ok("network", "ls")
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if !regexp.MustCompile(`^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$`).MatchString(lines[0]) {
		t.Fatalf("ls header %q", lines[0])
	}
	if !regexp.MustCompile(`(?m)^` + id[:12] + `\s+front\s+bridge\s+local$`).MatchString(ls) {
		t.Fatalf("ls lacks the network:\n%s", ls)
	}
	if len(lines) != 5 { // header, bridge, front, host, none
		t.Fatalf("ls has %d lines:\n%s", len(lines), ls)
	}
	if q := d.ok("network", "ls", "-q", "--no-trunc", "-f", "name=fro"); q != id+"\n" {
		t.Fatalf("ls -q --no-trunc -f name=fro = %q", q)
	}

	var nets []map[string]any
	out := d.ok("network", "inspect", "front")
	if !strings.HasPrefix(out, "[\n    {\n        \"Name\": \"front\"") {
		t.Fatalf("inspect not indented like docker:\n%s", out)
	}
	if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 {
		t.Fatalf("inspect output %q: %v", out, err)
	}
	n := nets[0]
	ipam := n["IPAM"].(map[string]any)["Config"].([]any)[0].(map[string]any)
	if n["Id"] != id || n["Internal"] != true || n["Attachable"] != true || ipam["Subnet"] != "192.0.2.0/24" ||
		ipam["Gateway"] != "192.0.2.1" || ipam["IPRange"] != "192.0.2.128/25" ||
		ipam["AuxiliaryAddresses"].(map[string]any)["router"] != "192.0.2.2" ||
		n["Labels"].(map[string]any)["team"] != "net" || n["Options"].(map[string]any)["com.docker.network.driver.mtu"] != "1400" {
		t.Fatalf("inspect = %v", n)
	}

	// Connect and disconnect a container.
	ctr := strings.TrimSpace(d.ok("run", "-d", "--name", "web", "busybox", "sleep", "100"))
	d.ok("network", "connect", "--ip", "192.0.2.200", "--alias", "www", "front", "web")
	out = d.ok("network", "inspect", "front")
	if !strings.Contains(out, `"IPv4Address": "192.0.2.200/24"`) || !strings.Contains(out, ctr) {
		t.Fatalf("inspect after connect lacks the endpoint:\n%s", out)
	}
	if r := d.run("network", "rm", "front"); r.code != 1 || !regexp.MustCompile(`^Error response from daemon: error while removing network: network front id [0-9a-f]{64} has active endpoints\n$`).MatchString(r.stderr) {
		t.Fatalf("rm of a used network: %+v", r)
	}
	d.ok("network", "disconnect", "-f", "front", "web")
	if out := d.ok("network", "rm", "front"); out != "front\n" {
		t.Fatalf("rm printed %q", out)
	}
}

func TestNetworkRemoveContinuesPastErrors(t *testing.T) {
	d := newDaemon(t)
	d.ok("network", "create", "a")
	d.ok("network", "create", "b")
	r := d.run("network", "rm", "a", "nope", "bridge", "b")
	if r.code != 1 || r.stdout != "a\nb\n" {
		t.Fatalf("rm: %+v", r)
	}
	want := "Error response from daemon: network nope not found\nError response from daemon: bridge is a pre-defined network and cannot be removed\n"
	if r.stderr != want {
		t.Fatalf("rm stderr = %q, want %q", r.stderr, want)
	}
}

func TestNetworkInspectMissing(t *testing.T) {
	d := newDaemon(t)
	r := d.run("network", "inspect", "bridge", "ghost")
	if r.code != 1 || r.stderr != "Error response from daemon: network ghost not found\n" {
		t.Fatalf("inspect: %+v", r)
	}
	var nets []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &nets); err != nil || len(nets) != 1 || nets[0]["Name"] != "bridge" {
		t.Fatalf("inspect printed %q (%v)", r.stdout, err)
	}
}

func TestNetworkPrune(t *testing.T) {
	d := newDaemon(t)
	d.ok("network", "create", "a")
	d.ok("network", "create", "b")
	d.ok("run", "-d", "--net", "b", "busybox", "sleep", "1")

	r := d.runIn("n\n", "network", "prune")
	if r.code != 0 || d.reqs.count("POST", "/networks/prune") != 0 || !strings.Contains(r.stdout, "[y/N]") {
		t.Fatalf("declined prune: %+v, prune requests %d", r, d.reqs.count("POST", "/networks/prune"))
	}
	r = d.runIn("y\n", "network", "prune")
	if r.code != 0 || !strings.HasSuffix(r.stdout, "Deleted Networks:\na\n") {
		t.Fatalf("prune: %+v", r)
	}
	if out := d.ok("network", "prune", "-f"); out != "" {
		t.Fatalf("second prune printed %q", out)
	}
	if ls := d.ok("network", "ls", "-q", "-f", "type=custom"); len(strings.Fields(ls)) != 1 {
		t.Fatalf("custom networks after prune: %q", ls)
	}
}

func TestNetworkListFilters(t *testing.T) {
	d := newDaemon(t)
	d.ok("network", "create", "--label", "env=prod", "prod1")
	d.ok("network", "create", "--label", "env=dev", "dev1")
	d.ok("network", "create", "-d", "macvlan", "ov1")
	names := func(args ...string) string {
		out := d.ok(append([]string{"network", "ls"}, args...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			got = append(got, strings.Fields(l)[1])
		}
		return strings.Join(got, ",")
	}
	tests := []struct {
		filter []string
		want   string
	}{
		{[]string{"-f", "type=custom"}, "dev1,ov1,prod1"},
		{[]string{"-f", "type=builtin"}, "bridge,host,none"},
		{[]string{"-f", "label=env=prod"}, "prod1"},
		{[]string{"-f", "label=env"}, "dev1,prod1"},
		{[]string{"-f", "driver=macvlan"}, "ov1"},
		{[]string{"-f", "scope=global"}, ""},
		{[]string{"-f", "scope=local"}, "bridge,dev1,host,none,ov1,prod1"},
		{[]string{"-f", "name=1"}, "dev1,ov1,prod1"},
		{[]string{"-f", "name=^prod"}, "prod1"},
		{[]string{"-f", "name=prod1", "-f", "name=dev1"}, "dev1,prod1"},
		{[]string{"-f", "driver=bridge", "-f", "type=custom"}, "dev1,prod1"},
	}
	for _, tc := range tests {
		if got := names(tc.filter...); got != tc.want {
			t.Errorf("ls %v = %s, want %s", tc.filter, got, tc.want)
		}
	}
	if r := d.run("network", "ls", "-f", "type=weird"); r.code != 1 || r.stderr != "Error response from daemon: invalid filter: 'type'='weird'\n" {
		t.Errorf("bad type filter: %+v", r)
	}
	if r := d.run("network", "ls", "-f", "color=red"); r.code != 1 || r.stderr != "Error response from daemon: invalid filter 'color'\n" {
		t.Errorf("unknown filter: %+v", r)
	}
}

// Bad input is rejected by the CLI before any request reaches the backend.
func TestBadInputNeverReachesBackend(t *testing.T) {
	d := newDaemon(t)
	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"network", "create", "--subnet", "10.0.0/33", "x"}, 1, `invalid argument "10.0.0/33" for "--subnet" flag: invalid CIDR address: 10.0.0/33`},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--gateway", "192.0.2.300", "x"}, 1, `invalid argument "192.0.2.300" for "--gateway" flag: not an IP address`},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--gateway", "198.51.100.1", "x"}, 1, "no matching subnet for gateway 198.51.100.1"},
		{[]string{"network", "create", "--gateway", "198.51.100.1", "x"}, 1, "every ip-range or gateway must have a corresponding subnet"},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--subnet", "192.0.2.128/25", "x"}, 1, "multiple overlapping subnet configuration is not supported"},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--subnet", "198.51.100.0/24", "--ip-range", "192.0.2.0/26", "--ip-range", "192.0.2.64/26", "x"}, 1, "cannot configure multiple ranges (192.0.2.0/26, 192.0.2.64/26) on the same subnet (192.0.2.0/24)"},
		{[]string{"network", "create", "-o", "novalue", "x"}, 1, `invalid argument "novalue" for "--opt" flag: expected KEY=VALUE`},
		{[]string{"network", "create", "--label", "=v", "x"}, 1, `invalid argument "=v" for "--label" flag: expected KEY=VALUE, the key is empty`},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--aux-address", "router", "x"}, 1, `invalid argument "router" for "--aux-address" flag: expected KEY=VALUE`},
		{[]string{"network", "create", "--subnet", "192.0.2.0/24", "--aux-address", "r=203.0.113.9", "x"}, 1, "no matching subnet for aux-address 203.0.113.9"},
		{[]string{"network", "create", "--bogus", "x"}, 1, "unknown flag: --bogus\nSee 'vxnet network create --help'."},
		{[]string{"network", "create"}, 1, "\"vxnet network create\" requires exactly 1 argument\nSee 'vxnet network create --help'."},
		{[]string{"network", "ls", "-f", "driver"}, 1, "bad format of filter (expected name=value): driver"},
		{[]string{"network", "connect", "--ip", "nope", "n", "c"}, 1, `invalid argument "nope" for "--ip" flag: not an IP address`},
		{[]string{"network", "frobnicate"}, 1, "unknown command \"frobnicate\" for \"vxnet network\"\nSee 'vxnet network --help'."},
		{[]string{"run", "--ip", "1.2.3", "busybox"}, 125, `invalid argument "1.2.3" for "--ip" flag: not an IP address`},
		{[]string{"run", "--frob", "busybox"}, 125, "unknown flag: --frob\nSee 'vxnet run --help'."},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			before := d.reqs.total()
			r := d.run(tc.args...)
			if r.code != tc.code || r.stderr != tc.stderr+"\n" {
				t.Errorf("got exit %d stderr %q, want exit %d stderr %q", r.code, r.stderr, tc.code, tc.stderr+"\n")
			}
			if n := d.reqs.total() - before; n != 0 {
				t.Errorf("%d requests reached the daemon", n)
			}
		})
	}
}

// Every error class reaches the CLI with its status code and message.
func TestErrorMapping(t *testing.T) {
	tests := []struct {
		class  error
		status int
	}{
		{model.ErrNotFound, 404},
		{model.ErrForbidden, 403},
		{model.ErrConflict, 409},
		{model.ErrInvalid, 400},
		{model.ErrUnavailable, 503},
		{errors.New("boom"), 500},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			env := enginetest.New(t)
			d := &daemon{t: t, sock: startDaemon(t, failRemove{env.Engine, fmt.Errorf("engine: remove network x: %w", tc.class)}), env: env}
			r := d.run("network", "rm", "x")
			want := "Error response from daemon: engine: remove network x: " + tc.class.Error() + "\n"
			if r.code != 1 || r.stderr != want {
				t.Fatalf("got %+v, want stderr %q", r, want)
			}
			// The status code as seen on the wire.
			c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (netConn, error) {
				return dialUnix(ctx, d.sock)
			}}}
			req, _ := http.NewRequest(http.MethodDelete, "http://vxnet/v1.51/networks/x", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d content type %q, want %d", resp.StatusCode, resp.Header.Get("Content-Type"), tc.status)
			}
			var msg struct{ Message string }
			if err := json.Unmarshal(body, &msg); err != nil || msg.Message != "engine: remove network x: "+tc.class.Error() {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestContainerFlow(t *testing.T) {
	d := newDaemon(t)
	d.ok("network", "create", "--subnet", "198.51.100.0/24", "app")
	id := d.ok("run", "-d", "--name", "db", "--net", "app", "--ip", "198.51.100.10", "--network-alias", "database",
		"-h", "dbhost", "-e", "A=1", "busybox", "sleep", "1000")
	if !hexID.MatchString(id) {
		t.Fatalf("run -d printed %q", id)
	}
	id = strings.TrimSpace(id)

	ps := d.ok("ps")
	if !regexp.MustCompile(`^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES\n` + id[:12] + `\s+busybox(:latest)?\s+"sleep 1000"\s+(Less than a second|[0-9]+ seconds?) ago\s+Up (Less than a second|[0-9]+ seconds?)\s+db\n$`).MatchString(ps) {
		t.Fatalf("ps:\n%s", ps)
	}
	if q := d.ok("ps", "-q"); q != id[:12]+"\n" {
		t.Fatalf("ps -q = %q", q)
	}

	var ctrs []map[string]any
	out := d.ok("inspect", "db")
	if err := json.Unmarshal([]byte(out), &ctrs); err != nil || len(ctrs) != 1 {
		t.Fatalf("inspect %q: %v", out, err)
	}
	c := ctrs[0]
	ns := c["NetworkSettings"].(map[string]any)["Networks"].(map[string]any)["app"].(map[string]any)
	if c["Name"] != "/db" || c["Id"] != id || c["State"].(map[string]any)["Running"] != true ||
		c["Config"].(map[string]any)["Hostname"] != "dbhost" || c["HostConfig"].(map[string]any)["NetworkMode"] != "app" ||
		ns["IPAddress"] != "198.51.100.10" || ns["IPPrefixLen"] != 24.0 || ns["MacAddress"] != "02:42:c6:33:64:0a" ||
		ns["Aliases"].([]any)[0] != "database" {
		t.Fatalf("inspect = %s", out)
	}
	// inspect falls back to networks, and reports what exists neither way.
	r := d.run("inspect", "app", "ghost")
	if r.code != 1 || r.stderr != "Error: No such object: ghost\n" || !strings.Contains(r.stdout, `"Name": "app"`) {
		t.Fatalf("inspect app ghost: %+v", r)
	}

	if r := d.run("rm", "db"); r.code != 1 || !strings.Contains(r.stderr, "container is running") {
		t.Fatalf("rm of running: %+v", r)
	}
	if out := d.ok("stop", "db"); out != "db\n" {
		t.Fatalf("stop printed %q", out)
	}
	if ps := d.ok("ps", "-a"); !strings.Contains(ps, "Exited (137)") {
		t.Fatalf("ps -a:\n%s", ps)
	}
	if out := d.ok("start", "db"); out != "db\n" {
		t.Fatalf("start printed %q", out)
	}
	if out := d.ok("rm", "-f", "db"); out != "db\n" {
		t.Fatalf("rm -f printed %q", out)
	}
	if r := d.run("rm", "db"); r.code != 1 || r.stderr != "Error response from daemon: No such container: db\n" {
		t.Fatalf("rm again: %+v", r)
	}
}

func TestRunAttached(t *testing.T) {
	d := newDaemon(t)
	tests := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"run", "busybox", "echo", "hello", "world"}, 0, "hello world\n"},
		{[]string{"run", "--rm", "busybox", "echo", "bye"}, 0, "bye\n"},
		{[]string{"run", "busybox", "exit", "7"}, 7, ""},
		{[]string{"run", "--rm", "busybox", "exit", "9"}, 9, ""},
		{[]string{"run", "busybox", "false"}, 1, ""},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := d.run(tc.args...)
			if r.code != tc.code || r.stdout != tc.stdout || r.stderr != "" {
				t.Fatalf("got %+v, want exit %d stdout %q", r, tc.code, tc.stdout)
			}
		})
	}
	// --rm containers are gone, the others stay.
	if ps := d.ok("ps", "-a", "-q"); len(strings.Fields(ps)) != 3 {
		t.Fatalf("ps -a -q after runs: %q", ps)
	}
	if r := d.run("run", "nosuchimage"); r.code != 125 || !strings.HasPrefix(r.stderr, "Error response from daemon: Unable to find image 'nosuchimage:latest' locally") {
		t.Fatalf("run of a missing image: %+v", r)
	}
}

// failRemove is the engine with RemoveNetwork failing with err.
type failRemove struct {
	*engine.Engine
	err error
}

func (f failRemove) RemoveNetwork(context.Context, string) error { return f.err }

// hideWaiter hides the engine's ExitWaiter, to test the API's fallback.
type hideWaiter struct{ api.Backend }

func TestRunAttachedWithoutExitWaiter(t *testing.T) {
	env := enginetest.New(t)
	d := &daemon{t: t, sock: startDaemon(t, hideWaiter{env.Engine}), env: env}
	if r := d.run("run", "busybox", "exit", "4"); r.code != 4 {
		t.Fatalf("run: %+v", r)
	}
	if r := d.run("run", "busybox", "echo", "hi"); r.code != 0 || r.stdout != "hi\n" {
		t.Fatalf("run: %+v", r)
	}
}

func TestLogs(t *testing.T) {
	d := newDaemon(t)
	d.ok("run", "-d", "--name", "chatty", "busybox", "sleep", "9")
	d.env.AddOutput(t, "chatty", false, "to stdout\n")
	d.env.AddOutput(t, "chatty", true, "to stderr\n")
	r := d.run("logs", "chatty")
	if r.code != 0 || r.stdout != "to stdout\n" || r.stderr != "to stderr\n" {
		t.Fatalf("logs: %+v", r)
	}
}

func TestExec(t *testing.T) {
	d := newDaemon(t)
	d.ok("run", "-d", "--name", "box", "busybox", "sleep", "9")
	r := d.run("exec", "box", "fail", "3")
	if r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Fatalf("exec fail 3: %+v", r)
	}
	if r := d.run("exec", "box", "echo", "-n", "hi"); r.code != 0 || r.stdout != "-n hi\n" {
		t.Fatalf("exec echo (flags after the command go to it): %+v", r)
	}
	var gotEnv []string
	d.env.Runtime.ExecHook = func(cmd, env []string, stdout, stderr io.Writer) (int, error) {
		gotEnv = env
		return 0, nil
	}
	if r := d.run("exec", "-e", "X=1", "box", "env"); r.code != 0 || len(gotEnv) != 1 || gotEnv[0] != "X=1" {
		t.Fatalf("exec -e: %+v env %v", r, gotEnv)
	}
	d.env.Runtime.ExecHook = nil
	if r := d.run("exec", "nobox", "echo"); r.code != 1 || r.stderr != "Error response from daemon: No such container: nobox\n" {
		t.Fatalf("exec in a missing container: %+v", r)
	}
	d.ok("stop", "box")
	if r := d.run("exec", "box", "echo"); r.code != 1 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("exec in a stopped container: %+v", r)
	}
}

func TestImages(t *testing.T) {
	d := newDaemon(t)
	tar := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tar, []byte("not really a tar, the fake only hashes it"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := d.ok("image", "import", "alpine:3", tar)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`).MatchString(id) {
		t.Fatalf("import printed %q", id)
	}
	id2 := d.runIn("stdin bytes", "image", "import", "mine", "-")
	if id2.code != 0 || !strings.HasPrefix(id2.stdout, "sha256:") {
		t.Fatalf("import from stdin: %+v", id2)
	}
	ls := d.ok("image", "ls")
	if !regexp.MustCompile(`(?m)^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$`).MatchString(ls) ||
		!regexp.MustCompile(`(?m)^alpine\s+3\s+`+id[7:19]+`\s+(Less than a second|[0-9]+ seconds?) ago\s+41B$`).MatchString(ls) ||
		!regexp.MustCompile(`(?m)^mine\s+latest\s+`).MatchString(ls) ||
		!regexp.MustCompile(`(?m)^busybox\s+latest\s+[0-9a-f]{12}\s+About an hour ago\s+4.26MB$`).MatchString(ls) {
		t.Fatalf("image ls:\n%s", ls)
	}
	if r := d.runIn("", "image", "import", "empty", "-"); r.code != 1 || r.stderr != "Error response from daemon: image import: empty archive\n" {
		t.Fatalf("empty import: %+v", r)
	}
}

func TestVersionAndConnectionError(t *testing.T) {
	d := newDaemon(t)
	out := d.ok("version")
	if !strings.Contains(out, "Server: vxnet") || !strings.Contains(out, "API version:      "+api.APIVersion+" (minimum version "+api.MinAPIVersion+")") {
		t.Fatalf("version:\n%s", out)
	}
	var o, e bytes.Buffer
	code := Execute(context.Background(), NewRootCommand(), []string{"-H", "unix:///nonexistent/vx.sock", "network", "ls"}, nil, &o, &e)
	if code != 1 || e.String() != "Cannot connect to the vxnet daemon at unix:///nonexistent/vx.sock. Is the vxnet daemon running?\n" {
		t.Fatalf("no daemon: exit %d stderr %q", code, e.String())
	}
}

func TestHostFromEnv(t *testing.T) {
	d := newDaemon(t)
	t.Setenv(EnvHost, "unix://"+d.sock)
	var o, e bytes.Buffer
	if code := Main([]string{"network", "ls", "-q"}, &o, &e); code != 0 || len(strings.Fields(o.String())) != 3 {
		t.Fatalf("Main with %s: exit %d out %q err %q", EnvHost, code, o.String(), e.String())
	}
}

type netConn = net.Conn

func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// run -d --rm leaves the removal to the daemon (AutoRemove).
func TestRunDetachedAutoRemove(t *testing.T) {
	d := newDaemon(t)
	id := strings.TrimSpace(d.ok("run", "-d", "--rm", "busybox", "true"))
	// The daemon removes it once it has seen the exit.
	for i := 0; ; i++ {
		r := d.run("inspect", id)
		if r.code == 1 && r.stderr == "Error: No such object: "+id+"\n" {
			break
		}
		if i == 500 {
			t.Fatalf("container of run -d --rm still there after 10s: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	id = strings.TrimSpace(d.ok("run", "-d", "busybox", "true"))
	for i := 0; ; i++ {
		out := d.ok("inspect", id)
		if !strings.Contains(out, `"AutoRemove": false`) {
			t.Fatalf("inspect:\n%s", out)
		}
		if strings.Contains(out, `"Status": "exited"`) {
			break
		}
		if i == 500 {
			t.Fatalf("not exited after 10s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestHelpAndUsage(t *testing.T) {
	d := newDaemon(t)
	if out := d.ok("run", "--help"); !strings.Contains(out, "-h, --hostname") {
		t.Fatalf("run --help:\n%s", out)
	}
	if out := d.ok("network", "--help"); !strings.Contains(out, "create") || !strings.Contains(out, "prune") {
		t.Fatalf("network --help:\n%s", out)
	}
	if r := d.run("frob"); r.code != 1 || !strings.HasPrefix(r.stderr, `unknown command "frob" for "vxnet"`) {
		t.Fatalf("unknown command: %+v", r)
	}
}
