package e2e

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
)

// httpdCmd serves "hello from NAME" on port 80 with busybox httpd.
func httpdCmd(name string) []string {
	return []string{"sh", "-c", "mkdir -p /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www"}
}

// httpGet is a plain HTTP/1.0 GET of / on addr (host:port) with busybox nc
// (busybox wget crashes in this static build); it returns the body's last
// line, "" when nothing answered.
const httpGet = `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 "$0" "$1"`

func body(out string) string {
	_, b, ok := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
	if !ok {
		return ""
	}
	return strings.TrimSpace(b)
}

// fetch fetches http://addr/ from inside ns.
func fetch(ns *harness.NS, addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	out, _ := ns.Exec("busybox", "sh", "-c", httpGet, host, port)
	return body(out)
}

// fetchFrom fetches http://addr/ from inside a container.
func fetchFrom(h *harness.Host, ctr, addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	out, _, _ := h.CLI("exec", ctr, "sh", "-c", httpGet, host, port)
	return body(out)
}

// wantAnswer polls fetch until it returns want (httpd may still be starting).
func wantAnswer(t *testing.T, what, want string, fetch func() string) {
	t.Helper()
	var got string
	if !eventually(30*time.Second, func() bool { got = fetch(); return got == want }) {
		t.Errorf("%s: got %q, want %q", what, got, want)
	}
}

// Published ports of a bridge container answer HTTP from the outside
// namespace, from another host, from the host itself (its address and
// localhost) and from containers on the same host (same network: hairpin;
// other network); a port held by another container or by a process on the
// host is refused; the ports come back after kill -9 + restart with the
// table gone, and go with the container.
func TestPublishedPortsBridge(t *testing.T) {
	c := harness.New(t, harness.Options{Hosts: 2})
	h, other := c.Host(0), c.Host(1)
	h.Start()
	hostURL := h.Addr.String() + ":8080"
	cli(t, h, "network", "create", "--subnet", "10.88.0.0/24", "n1")
	h.MustDocker(t, append([]string{"run", "-d", "--name", "web", "--network", "n1",
		"-p", "8080:80", "-p", "127.0.0.1:8081:80", "-p", "9090:90/udp", "-p", "80", "busybox"}, httpdCmd("web")...)...)
	cli(t, h, "run", "-d", "--name", "peer", "--net", "n1", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "stranger", "busybox", "sleep", "1d") // default bridge

	want := "hello from web"
	wantAnswer(t, "from the outside namespace", want, func() string { return fetch(c.Outside(), hostURL) })
	wantAnswer(t, "from another host", want, func() string { return fetch(other.NS(), hostURL) })
	wantAnswer(t, "from the host's own address", want, func() string { return fetch(h.NS(), hostURL) })
	wantAnswer(t, "from the host's localhost", want, func() string { return fetch(h.NS(), "127.0.0.1:8080") })
	wantAnswer(t, "127.0.0.1 binding on localhost", want, func() string { return fetch(h.NS(), "127.0.0.1:8081") })
	wantAnswer(t, "hairpin from a container on the same network", want, func() string { return fetchFrom(h, "peer", hostURL) })
	wantAnswer(t, "from a container on another network", want, func() string { return fetchFrom(h, "stranger", hostURL) })
	if got := fetch(c.Outside(), h.Addr.String()+":8081"); got != "" {
		t.Errorf("the 127.0.0.1 binding answered from the outside: %q", got)
	}

	// docker port and the vxnet CLI show the bindings as Docker does; -p 80
	// got a random port that answers too.
	ports := h.MustDocker(t, "port", "web")
	for _, line := range []string{"80/tcp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081", "90/udp -> 0.0.0.0:9090"} {
		if !strings.Contains(ports, line) {
			t.Errorf("docker port web:\n%s\nwant a line %q", ports, line)
		}
	}
	var random string
	for _, l := range strings.Split(cli(t, h, "port", "web", "80"), "\n") {
		if hp, ok := strings.CutPrefix(l, "0.0.0.0:"); ok && hp != "8080" {
			random = hp
		}
	}
	if random == "" {
		t.Fatalf("no random host port for -p 80 in vxnet port web 80")
	}
	wantAnswer(t, "random host port", want, func() string { return fetch(c.Outside(), h.Addr.String()+":"+random) })

	// -P publishes the exposed ports (--expose here) on random host ports.
	h.MustDocker(t, append([]string{"run", "-d", "--name", "allp", "--network", "n1", "-P", "--expose", "80", "busybox"}, httpdCmd("allp")...)...)
	allp, _ := strings.CutPrefix(strings.TrimSpace(h.MustDocker(t, "port", "allp", "80/tcp")), "0.0.0.0:")
	if allp == "" || strings.Contains(allp, "\n") {
		t.Fatalf("docker port allp 80/tcp: %q", allp)
	}
	wantAnswer(t, "-P port", "hello from allp", func() string { return fetch(c.Outside(), h.Addr.String()+":"+allp) })

	// Taken by another container: refused with Docker's message.
	_, errOut, code := h.Docker("run", "-d", "--name", "web2", "--network", "n1", "-p", "8080:80", "busybox", "sleep", "1d")
	if code != 125 || !strings.Contains(errOut, "Bind for 0.0.0.0:8080 failed: port is already allocated") {
		t.Errorf("second -p 8080: exit %d, stderr %q", code, errOut)
	}
	// Taken by a process on the host.
	nc := exec.Command("nsenter", "--net="+h.Netns, "--", "busybox", "nc", "-l", "-p", "7070")
	nc.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-nc.Process.Pid, syscall.SIGKILL); nc.Wait() })
	if !eventually(5*time.Second, func() bool { out, _ := h.Exec("busybox", "netstat", "-ltn"); return strings.Contains(out, ":7070") }) {
		t.Fatal("nc is not listening on 7070")
	}
	cliFails(t, h, "0.0.0.0:7070/tcp: address already in use", "run", "-d", "--name", "web3", "--net", "n1", "-p", "7070:80", "busybox", "sleep", "1d")
	wantAnswer(t, "the first container after refusals", want, func() string { return fetch(c.Outside(), hostURL) })

	// kill -9, the table gone as after a reboot of the firewall, restart:
	// the ports are back and still held.
	h.Kill()
	h.MustExec(t, "nft", "delete", "table", "inet", "vxnet")
	if got := fetch(c.Outside(), hostURL); got != "" {
		t.Fatalf("answer without the table: %q", got)
	}
	h.Start()
	wantAnswer(t, "after kill -9 and restart", want, func() string { return fetch(c.Outside(), hostURL) })
	cli(t, h, "rm", "-f", "web2")
	_, errOut, code = h.Docker("run", "-d", "--name", "web2", "--network", "n1", "-p", "8080:80", "busybox", "sleep", "1d")
	if code != 125 || !strings.Contains(errOut, "port is already allocated") {
		t.Errorf("-p 8080 after restart: exit %d, stderr %q", code, errOut)
	}

	// The ports go with the container.
	cli(t, h, "rm", "-f", "web")
	if got := fetch(c.Outside(), hostURL); got != "" {
		t.Errorf("port answers after rm: %q", got)
	}
	cli(t, h, "rm", "-f", "web2")
	cli(t, h, "run", "-d", "--name", "web4", "--net", "n1", "-p", "8080:80", "busybox", "sleep", "1d")
}

// An overlay container's published port leads to its gateway bridge
// address: reachable from the outside namespace.
func TestPublishedPortsOverlay(t *testing.T) {
	c := ovCluster(t, 1)
	h := c.Host(0)
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.89.0.0/24", "ov")
	cli(t, h, append([]string{"run", "-d", "--name", "web", "--net", "ov", "-p", "8080:80", "busybox"}, httpdCmd("ov")...)...)
	wantAnswer(t, "overlay container from the outside", "hello from ov", func() string {
		return fetch(c.Outside(), h.Addr.String()+":8080")
	})
	// Another overlay container on the same host reaches it through the
	// host's address (both sit on the gateway bridge, which has ICC off).
	cli(t, h, "run", "-d", "--name", "cl", "--net", "ov", "busybox", "sleep", "1d")
	wantAnswer(t, "overlay container from an overlay container via the host", "hello from ov", func() string {
		return fetchFrom(h, "cl", h.Addr.String()+":8080")
	})
}
