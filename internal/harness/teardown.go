package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/leakcheck"
)

// teardown removes everything the cluster and its daemons made. It runs
// in t.Cleanup, also after a failure or a partial New, and keeps going past
// single errors (reported with t.Errorf).
func (c *Cluster) teardown() {
	t := c.t
	if t.Failed() {
		for _, h := range c.Hosts {
			if h.proc == nil {
				continue // never started
			}
			t.Logf("harness: %s daemon log (%s), last %d lines:\n%s", h.Name, h.LogPath, logTailSize, h.LogTail(logTailSize))
		}
	}
	// 1. Daemons, with SIGKILL: a daemon's own cleanup is not under test.
	for _, h := range c.Hosts {
		if h.proc == nil {
			continue
		}
		h.killGroup(syscall.SIGKILL)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			t.Errorf("harness: %s: daemon pid %d not gone after SIGKILL", h.Name, h.proc.Process.Pid)
		}
	}
	// 1b. What the daemons left in their containerd namespaces; leases,
	// orphaned snapshots, containers the daemon has no record of and tasks
	// running for containers it records as stopped are leaks.
	for _, h := range c.Hosts {
		if h.containerd == "" {
			continue
		}
		for _, leak := range orphanedContainerd(h) {
			t.Errorf("harness: %s: leaked %s", h.Name, leak)
		}
		for _, leak := range cleanContainerd(h.containerd, h.ns.Name) {
			t.Errorf("harness: %s: leaked %s", h.Name, leak)
		}
	}
	// 2. Containers, through runc, so runc removes its cgroups too.
	for _, h := range c.Hosts {
		root := filepath.Join(h.ExecRoot, RuncRoot)
		if _, err := os.Stat(root); err != nil {
			continue
		}
		out, err := runc(root, "list", "-q")
		if err != nil {
			t.Errorf("harness: %s: runc list: %v: %s", h.Name, err, out)
			continue
		}
		for _, id := range strings.Fields(out) {
			if out, err := runc(root, "delete", "--force", id); err != nil {
				t.Errorf("harness: %s: runc delete %s: %v: %s", h.Name, id, err, out)
			}
		}
	}
	// 3. Every other process of ours: shims, stray containers, pings.
	if left := c.killProcesses(); len(left) > 0 {
		t.Errorf("harness: processes still alive after SIGKILL: %v", left)
	}
	// 4. Mounts under the cluster directory (namespace pins, rootfs),
	// deepest first, repeated for stacked mounts.
	for i := 0; i < 5; i++ {
		mps := c.mountsBelow()
		if len(mps) == 0 {
			break
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				t.Errorf("harness: unmount %s: %v", mp, err)
			}
		}
	}
	// 5. Namespaces, hosts first; deleting them deletes their links.
	for i := len(c.made) - 1; i >= 0; i-- {
		ns := c.made[i]
		out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such file") {
			t.Errorf("harness: ip netns delete %s: %v: %s", ns.Name, err, out)
		}
	}
	// 6. The directory, unless something is still mounted in it: RemoveAll
	// would descend into the mount and delete what is not ours.
	if c.Dir == "" {
		return
	}
	if mps := c.mountsBelow(); len(mps) > 0 {
		t.Errorf("harness: still mounted, not removing %s: %v", c.Dir, mps)
		return
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Errorf("harness: remove %s: %v", c.Dir, err)
	}
}

func runc(root string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "runc", append([]string{"--root", root}, args...)...).CombinedOutput()
	return string(out), err
}

// mountsBelow returns the mount points under the cluster directory,
// deepest first.
func (c *Cluster) mountsBelow() []string {
	if c.Dir == "" {
		return nil
	}
	all, err := leakcheck.MountPoints()
	if err != nil {
		c.t.Errorf("harness: %v", err)
		return nil
	}
	var mps []string
	seen := map[string]bool{}
	for _, mp := range all {
		if strings.HasPrefix(mp, c.Dir+"/") && !seen[mp] {
			seen[mp] = true
			mps = append(mps, mp)
		}
	}
	sort.Slice(mps, func(i, j int) bool {
		if di, dj := strings.Count(mps[i], "/"), strings.Count(mps[j], "/"); di != dj {
			return di > dj
		}
		return mps[i] > mps[j]
	})
	return mps
}

// ourNamespaces returns the inodes of the cluster's network namespaces:
// the named ones and every namespace pinned under the cluster directory.
func (c *Cluster) ourNamespaces() map[uint64]bool {
	inodes := map[uint64]bool{}
	paths := c.mountsBelow()
	for _, ns := range c.made {
		paths = append(paths, ns.Path)
	}
	for _, p := range paths {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) != nil || st.Type != unix.NSFS_MAGIC {
			continue
		}
		var s unix.Stat_t
		if unix.Stat(p, &s) == nil {
			inodes[s.Ino] = true
		}
	}
	return inodes
}

// killProcesses SIGKILLs, until none are left (bounded to about 5 s), every
// process other than this one that is in one of the cluster's network
// namespaces or whose command line names the cluster directory. It returns
// the pids still alive at the end.
func (c *Cluster) killProcesses() []int {
	inodes := c.ourNamespaces()
	self := os.Getpid()
	var victims []int
	for i := 0; i < 50; i++ {
		victims = victims[:0]
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == self || pid <= 1 {
				continue
			}
			if c.isOurs(pid, inodes) {
				victims = append(victims, pid)
			}
		}
		if len(victims) == 0 {
			return nil
		}
		for _, pid := range victims {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return victims
}

func (c *Cluster) isOurs(pid int, inodes map[uint64]bool) bool {
	dir := "/proc/" + strconv.Itoa(pid)
	var st unix.Stat_t
	if unix.Stat(dir+"/ns/net", &st) == nil && inodes[st.Ino] {
		return true
	}
	if c.Dir == "" {
		return false
	}
	b, err := os.ReadFile(dir + "/cmdline")
	return err == nil && strings.Contains(string(b), c.Dir)
}
