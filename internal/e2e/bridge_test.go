package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// Two containers on a user bridge reach each other by name and by
// NAME.NETWORK; exec returns ping's exit code.
func TestBridgeNamesAndExitCodes(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "--subnet", "10.77.0.0/24", "n1")
	cli(t, h, "run", "-d", "--name", "a", "--net", "n1", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "b", "--net", "n1", "--network-alias", "db", "busybox", "sleep", "1d")
	for _, dst := range []string{"b", "b.n1", "db", "db.n1"} {
		if !ping(t, h, "a", dst) {
			t.Errorf("a cannot ping %s", dst)
		}
	}
	if !ping(t, h, "b", "a.n1") {
		t.Error("b cannot ping a.n1")
	}
	// A free address of the subnet answers nobody: exec passes ping's failure on.
	if code := execCode(t, h, "a", "ping", "-c1", "-W1", "10.77.0.200"); code == 0 {
		t.Error("ping to an unused address succeeded")
	}
	if code := execCode(t, h, "a", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec exit code = %d, want 7", code)
	}
	// Docker's MAC for the address, eth0, and hostname/hosts files.
	ip := ipOf(t, h, "a", "n1")
	var b [4]int
	fmt.Sscanf(ip, "%d.%d.%d.%d", &b[0], &b[1], &b[2], &b[3])
	wantMAC := fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
	if out := cli(t, h, "exec", "a", "cat", "/sys/class/net/eth0/address"); out != wantMAC {
		t.Errorf("eth0 MAC = %s, want %s", out, wantMAC)
	}
	// Restart keeps the address.
	cli(t, h, "stop", "-t", "1", "a")
	cli(t, h, "start", "a")
	if got := ipOf(t, h, "a", "n1"); got != ip {
		t.Errorf("address after restart = %s, want %s", got, ip)
	}
	if !ping(t, h, "b", "a") {
		t.Error("b cannot ping a after a's restart")
	}
	// Foreground run: output and exit code come back.
	out, _, code := h.CLI("run", "--rm", "--net", "n1", "busybox", "sh", "-c", "echo hi; exit 3")
	if code != 3 || strings.TrimSpace(out) != "hi" {
		t.Errorf("run --rm: code %d out %q, want 3 and hi", code, out)
	}
	if logs := cli(t, h, "logs", "a"); logs != "" {
		t.Errorf("logs of a sleeping container = %q", logs)
	}
}

// Containers on different bridge networks cannot reach each other; one on
// both reaches both; disconnect removes its interface and its hosts
// entries from every peer.
func TestBridgeIsolationConnectDisconnect(t *testing.T) {
	_, h := single(t)
	cli(t, h, "network", "create", "n1")
	cli(t, h, "network", "create", "n2")
	cli(t, h, "run", "-d", "--name", "a", "--net", "n1", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "b", "--net", "n2", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "c", "--net", "n1", "busybox", "sleep", "1d")
	bIP := ipOf(t, h, "b", "n2")
	if ping(t, h, "a", bIP) {
		t.Fatal("a (n1) reached b (n2)")
	}
	cli(t, h, "network", "connect", "--alias", "both", "n2", "c")
	if !ping(t, h, "c", "a") || !ping(t, h, "c", "b") {
		t.Fatal("c on n1 and n2 does not reach both a and b")
	}
	if !ping(t, h, "b", "c") || !ping(t, h, "b", "both.n2") {
		t.Error("b does not reach c by name after connect")
	}
	if code := execCode(t, h, "c", "ip", "link", "show", "eth1"); code != 0 {
		t.Fatal("c has no eth1 after connect")
	}
	if ping(t, h, "a", bIP) {
		t.Error("a reached b through c's connection")
	}
	cli(t, h, "network", "disconnect", "n2", "c")
	if code := execCode(t, h, "c", "ip", "link", "show", "eth1"); code == 0 {
		t.Error("c still has eth1 after disconnect")
	}
	if hosts := cli(t, h, "exec", "b", "cat", "/etc/hosts"); strings.Contains(hosts, " c ") || strings.Contains(hosts, "\tc ") || strings.Contains(hosts, "both") {
		t.Errorf("b's /etc/hosts still lists c after disconnect:\n%s", hosts)
	}
	if ping(t, h, "b", "c") {
		t.Error("b still reaches c after disconnect")
	}
	if !ping(t, h, "c", "a") {
		t.Error("c lost n1 after disconnecting n2")
	}
}

// Egress: the outside sees the host's address (masquerade); a container on
// an --internal network cannot reach it.
func TestBridgeEgressAndInternal(t *testing.T) {
	c, h := single(t)
	rec := c.StartEchoServer(8080)
	dst := fmt.Sprintf("%s:8080", c.OutsideAddr())
	cli(t, h, "network", "create", "out")
	cli(t, h, "network", "create", "--internal", "priv")
	cli(t, h, "run", "-d", "--name", "a", "--net", "out", "busybox", "sleep", "1d")
	cli(t, h, "run", "-d", "--name", "p", "--net", "priv", "busybox", "sleep", "1d")
	if code := execCode(t, h, "a", "sh", "-c", "echo hello | nc -w 2 "+strings.Replace(dst, ":", " ", 1)); code != 0 {
		t.Fatalf("a cannot reach the outside %s (exit %d)", dst, code)
	}
	srcs := rec.Sources()
	if len(srcs) == 0 || srcs[len(srcs)-1] != h.Addr {
		t.Errorf("outside saw sources %v, want the host's %v (masquerade)", srcs, h.Addr)
	}
	if ping(t, h, "p", c.OutsideAddr().String()) {
		t.Error("container on an internal network reached the outside")
	}
	before := len(rec.Sources())
	execCode(t, h, "p", "sh", "-c", "echo x | nc -w 2 "+strings.Replace(dst, ":", " ", 1))
	if len(rec.Sources()) != before {
		t.Error("internal container opened a connection to the outside")
	}
	// The default bridge masquerades too, and host and none networks work.
	cli(t, h, "run", "-d", "--name", "d", "busybox", "sleep", "1d")
	if !ping(t, h, "d", c.OutsideAddr().String()) {
		t.Error("container on the default bridge cannot reach the outside")
	}
	out := cli(t, h, "run", "--rm", "--net", "none", "busybox", "ip", "-o", "link")
	if strings.Contains(out, "eth0") || !strings.Contains(out, "lo") {
		t.Errorf("--net none links: %s", out)
	}
	out = cli(t, h, "run", "--rm", "--net", "host", "busybox", "ip", "-o", "addr")
	if !strings.Contains(out, h.Addr.String()) {
		t.Errorf("--net host does not see the host's address: %s", out)
	}
}
