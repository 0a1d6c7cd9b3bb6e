package netns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/testreq"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		testreq.Skip(t, "needs root: creates network namespaces")
	}
}

// nsInode returns the inode of the namespace file at p (following links).
func nsInode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return st.Ino
}

// mounted reports whether p is a mount point in /proc/self/mountinfo.
func mounted(t *testing.T, p string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// threadsInNamespace checks that every thread of this process is in the
// namespace with inode want.
func threadsInNamespace(t *testing.T, want uint64) {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		var st unix.Stat_t
		p := filepath.Join("/proc/self/task", task.Name(), "ns/net")
		if err := unix.Stat(p, &st); err != nil {
			continue // thread exited meanwhile
		}
		if st.Ino != want {
			t.Errorf("thread %s is in netns inode %d, want %d", task.Name(), st.Ino, want)
		}
	}
}

func newNS(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ns")
	if err := Create(p); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := Delete(p); err != nil {
			t.Errorf("Delete: %v", err)
		}
		if mounted(t, p) {
			t.Errorf("%s still mounted after Delete", p)
		}
	})
	return p
}

func TestIsPinnedNotNamespace(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "plain")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, filepath.Join(dir, "missing"), dir} {
		if IsPinned(p) {
			t.Errorf("IsPinned(%s) = true, want false", p)
		}
	}
}

func TestCreateDoDelete(t *testing.T) {
	needRoot(t)
	hostIno := nsInode(t, "/proc/self/ns/net")
	p := newNS(t)

	if !IsPinned(p) {
		t.Fatalf("IsPinned(%s) = false after Create", p)
	}
	if !mounted(t, p) {
		t.Fatalf("%s not in mountinfo after Create", p)
	}
	nsIno := nsInode(t, p)
	if nsIno == hostIno {
		t.Fatal("created namespace is the host's")
	}
	// Create again is a no-op on the same namespace.
	if err := Create(p); err != nil {
		t.Fatalf("Create again: %v", err)
	}
	if got := nsInode(t, p); got != nsIno {
		t.Fatalf("Create again replaced the namespace: inode %d, want %d", got, nsIno)
	}

	// Do runs inside the namespace; loopback is up there.
	var inside uint64
	var loUp bool
	err := Do(p, func() error {
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		inside = st.Ino
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		loUp = lo.Attrs().Flags&unix.IFF_UP != 0
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside != nsIno {
		t.Errorf("Do ran in netns inode %d, want %d", inside, nsIno)
	}
	if !loUp {
		t.Error("loopback is down in the created namespace")
	}

	// Errors from fn come back unchanged.
	sentinel := errors.New("boom")
	if err := Do(p, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do error = %v, want %v", err, sentinel)
	}

	// A panic in fn reaches the caller.
	func() {
		defer func() {
			if v := recover(); v != "oops" {
				t.Errorf("recovered %v, want oops", v)
			}
		}()
		_ = Do(p, func() error { panic("oops") })
	}()

	// Every thread, the main one included, is back in the host namespace
	// after Create and many calls of Do.
	for i := 0; i < 50; i++ {
		if err := Do(p, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	threadsInNamespace(t, hostIno)

	// A handle is bound to the namespace: lo there has index 1 and the
	// handle sees only the namespace's links.
	h, err := Handle(p)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	links, err := h.LinkList()
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Errorf("links in new namespace = %v, want [lo]", names)
	}

	// Delete, twice.
	if err := Delete(p); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := Delete(p); err != nil {
		t.Fatalf("Delete again: %v", err)
	}
	if IsPinned(p) || mounted(t, p) {
		t.Fatal("namespace still pinned after Delete")
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("mount point file still there: %v", err)
	}
	if err := Do(p, func() error { return nil }); err == nil {
		t.Fatal("Do on a deleted namespace succeeded")
	}
}

func TestDeleteMissing(t *testing.T) {
	needRoot(t)
	if err := Delete(filepath.Join(t.TempDir(), "never")); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}
}
