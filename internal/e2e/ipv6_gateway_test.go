package e2e

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/netns"
)

// Overlay containers get out over IPv6 through the gateway bridge: it was
// IPv4 only (made for an IPv4 overlay container first) and gains an IPv6
// subnet when a container of a dual-stack overlay arrives. That container
// reaches a TCP listener in the outside namespace (which has no route to
// any ULA) with the host's IPv6 address as source (masquerade), and its
// published port answers on the host's IPv6 address from the outside. An
// IPv6-only overlay container pings the outside; the IPv4 overlay
// container keeps no IPv6 way out. A restart keeps the gateway's IPv6.
func TestOverlayIPv6Gateway(t *testing.T) {
	c := ovCluster(t, 1)
	h := c.Host(0)
	out := c.Outside()
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::254/64", "dev", "eth0", "nodad")
	out.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ee::1/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "addr", "add", "2001:db8:ff::10/64", "dev", "eth0", "nodad")
	h.MustExec(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:ff::254")
	const host6 = "2001:db8:ff::10"

	var ln net.Listener
	if err := netns.Do(out.Path, func() error {
		var err error
		ln, err = net.Listen("tcp6", "[2001:db8:ee::1]:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sources := make(chan string, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			sources <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
			conn.Close()
		}
	}()

	// An IPv4 overlay container first: the gateway bridge is IPv4 only.
	cli(t, h, "network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "v4")
	cli(t, h, "run", "-d", "--name", "a4", "--net", "v4", "busybox", "sleep", "1d")
	if got := h.MustExec(t, "ip", "-6", "addr", "show", "dev", "vxnet_gwbridge", "scope", "global"); strings.Contains(got, "inet6") {
		t.Errorf("gateway bridge has IPv6 before any IPv6 overlay container:\n%s", got)
	}

	cli(t, h, "network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.92.0.0/24", "--subnet", "fd00:92::/64", "ds")
	cli(t, h, append([]string{"run", "-d", "--name", "web", "--net", "ds", "-p", "8081:80", "busybox"}, httpdCmd("web")...)...)
	if code := execCode(t, h, "web", "sh", "-c", "echo hi | nc -w 2 2001:db8:ee::1 8080"); code != 0 {
		t.Fatalf("overlay container cannot reach [2001:db8:ee::1]:8080 (exit %d)", code)
	}
	select {
	case src := <-sources:
		if src != host6 {
			t.Errorf("outside saw source %s, want the host's %s (masquerade)", src, host6)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the outside accepted no connection")
	}
	wantAnswer(t, "outside -> [host IPv6]:8081 (overlay container)", "hello from web", func() string { return fetch6(out, host6, "8081") })
	wantAnswer(t, "outside -> host IPv4:8081 (overlay container)", "hello from web", func() string { return fetch(out, h.Addr.String()+":8081") })

	// kill -9 and restart: the gateway's IPv6 subnet and addresses are
	// kept (a second container gets another address: both ports answer).
	h.Kill()
	h.Start()
	cli(t, h, append([]string{"run", "-d", "--name", "web2", "--net", "ds", "-p", "8082:80", "busybox"}, httpdCmd("web2")...)...)
	wantAnswer(t, "after restart: outside -> [host IPv6]:8081", "hello from web", func() string { return fetch6(out, host6, "8081") })
	wantAnswer(t, "after restart: outside -> [host IPv6]:8082", "hello from web2", func() string { return fetch6(out, host6, "8082") })

	// IPv6-only overlay: out over IPv6 through the gateway bridge.
	cli(t, h, "network", "create", "-d", "overlay", "--ipv6", "--ipv4=false", "--subnet", "fd00:93::/64", "o6")
	cli(t, h, "run", "-d", "--name", "b6", "--net", "o6", "busybox", "sleep", "1d")
	if !ping6(t, h, "b6", "2001:db8:ee::1") {
		t.Error("container on an IPv6-only overlay cannot ping6 the outside")
	}

	// The IPv4 overlay container got no IPv6 on the gateway bridge.
	if ping6(t, h, "a4", "2001:db8:ee::1") {
		t.Error("container on an IPv4 overlay reached the outside over IPv6")
	}
	select {
	case src := <-sources:
		t.Errorf("unexpected connection from %s", src)
	default:
	}

	// The port and the way out go with the container.
	cli(t, h, "rm", "-f", "web")
	if got := fetch6(out, host6, "8081"); got != "" {
		t.Errorf("port answers on IPv6 after rm: %q", got)
	}
	cli(t, h, "rm", "-f", "b6", "a4", "web2")
	cli(t, h, "network", "rm", "ds", "o6", "v4")
}
