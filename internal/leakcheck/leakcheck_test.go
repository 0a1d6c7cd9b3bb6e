package leakcheck

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/testreq"
)

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:             "/a/b",
		`/a\040b`:          "/a b",
		`/x\011y\134z\040`: "/x\ty\\z ",
		`/bad\09`:          `/bad\09`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMarkerIsNotAPrefixOfAnother(t *testing.T) {
	m := Marker()
	if !strings.HasPrefix(m, "vxt") || !strings.HasSuffix(m, "-") {
		t.Fatalf("Marker() = %q, want vxt<pid>-", m)
	}
}

func hasLeak(leaks []string, sub string) bool {
	for _, l := range leaks {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// A marked process started after the snapshot is a leak until it is gone;
// an unmarked one is never reported.
func TestProcessLeak(t *testing.T) {
	marker := Marker() + "proc"
	s := Take(Options{Markers: []string{marker}, Grace: 2 * time.Second})
	marked := exec.Command("sh", "-c", "sleep 30", marker+"-sleeper")
	unmarked := exec.Command("sh", "-c", "sleep 30", "plain-sleeper")
	waited := make(chan struct{})
	for _, c := range []*exec.Cmd{marked, unmarked} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		unmarked.Process.Kill()
		unmarked.Wait()
		marked.Process.Kill()
		select { // the goroutine below waits for marked; never Wait twice
		case <-waited:
		case <-time.After(5 * time.Second):
		}
	})
	// Between fork and exec a child's command line is still the test
	// binary's: look again until the exec has happened.
	leaks := s.Leaks()
	for deadline := time.Now().Add(5 * time.Second); !hasLeak(leaks, marker+"-sleeper") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		leaks = s.Leaks()
	}
	if !hasLeak(leaks, marker+"-sleeper") {
		t.Errorf("marked process not reported: %q", leaks)
	}
	if hasLeak(leaks, "plain-sleeper") {
		t.Errorf("unmarked process reported: %q", leaks)
	}
	// Ended during the grace period: Check passes.
	go func() {
		defer close(waited)
		time.Sleep(300 * time.Millisecond)
		marked.Process.Kill()
		marked.Wait()
	}()
	if err := s.Check(); err != nil {
		t.Errorf("Check after the process ended: %v", err)
	}
}

func TestCheckReportsWhatStays(t *testing.T) {
	marker := Marker() + "stay"
	s := Take(Options{Markers: []string{marker}, Grace: 500 * time.Millisecond})
	c := exec.Command("sh", "-c", "sleep 30", marker)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { c.Process.Kill(); c.Wait() }()
	err := s.Check()
	if err == nil || !strings.Contains(err.Error(), marker) {
		t.Fatalf("Check = %v, want a leak naming %s", err, marker)
	}
}

// A named network namespace (and its mount point) made after the snapshot
// is reported; deleting it makes Check pass.
func TestNetnsLeak(t *testing.T) {
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates a network namespace")
	}
	name := Marker() + "ns"
	s := Take(Options{Grace: time.Second})
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			exec.Command("ip", "netns", "delete", name).Run()
		}
	})
	leaks := s.Leaks()
	if !hasLeak(leaks, "netns "+name) || !hasLeak(leaks, "mount /run/netns/"+name) {
		t.Errorf("leaks = %q, want the netns and its mount", leaks)
	}
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns delete: %v: %s", err, out)
	}
	deleted = true
	if err := s.Check(); err != nil {
		t.Errorf("Check after delete: %v", err)
	}
}

// With nothing made, Check finds nothing (root links and tables included).
func TestRootLinksStable(t *testing.T) {
	s := Take(Options{Grace: time.Second})
	if err := s.Check(); err != nil {
		t.Errorf("Check with nothing done: %v", err)
	}
}
