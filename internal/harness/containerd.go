package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/leakcheck"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/runtime"
	"github.com/vxnet/vxnet/internal/store"
)

// The hosts of every cluster of a test process share one containerd, as
// hosts on one machine would: each daemon gets --containerd with its own
// namespace, named like its host's network namespace (so it carries the
// marker). The containerd is started on first use, its directories under
// /tmp/<marker>containerd-<token>, and stopped by Main after the tests.
var shared struct {
	once sync.Once
	sup  *runtime.Supervisor
	dir  string
	err  error
}

// SharedContainerd returns the socket of the test process's containerd,
// starting it on first use.
func SharedContainerd() (string, error) {
	shared.once.Do(func() {
		shared.dir = filepath.Join(os.TempDir(), leakcheck.Marker()+"containerd-"+token())
		shared.sup, shared.err = runtime.Supervise(context.Background(), runtime.SupervisorOptions{
			Root:  filepath.Join(shared.dir, "root"),
			State: filepath.Join(shared.dir, "state"),
		})
	})
	if shared.err != nil {
		return "", fmt.Errorf("harness: shared containerd: %w", shared.err)
	}
	return shared.sup.Address(), nil
}

// stopSharedContainerd stops the shared containerd and removes its
// directories; namespaces left in it are leaks, returned as an error.
func stopSharedContainerd() error {
	if shared.sup == nil {
		return nil
	}
	var leaked []string
	if cl, err := containerd.New(shared.sup.Address(), containerd.WithTimeout(5*time.Second)); err == nil {
		if nss, err := cl.NamespaceService().List(context.Background()); err == nil {
			for _, ns := range nss {
				if ns != "default" {
					leaked = append(leaked, "containerd namespace "+ns)
				}
			}
		}
		cl.Close()
	}
	shared.sup.Close()
	unmountBelow(shared.dir)
	os.RemoveAll(shared.dir)
	if len(leaked) > 0 {
		return fmt.Errorf("leakcheck: %d leaked objects:\n\t%s", len(leaked), strings.Join(leaked, "\n\t"))
	}
	return nil
}

// cleanContainerd removes what a test left in its host's containerd
// namespace: tasks and containers (a test may end with containers running;
// the daemon is gone by now), then images, and returns as leaks what must
// not be there once those are gone: leases, and snapshots no container or
// image holds. The namespace is deleted last.
func cleanContainerd(address, ns string) []string {
	cl, err := containerd.New(address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return []string{fmt.Sprintf("containerd %s: %v", address, err)}
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	var leaks []string
	if nss, err := cl.NamespaceService().List(ctx); err != nil || !contains(nss, ns) {
		return nil // the daemon never used containerd
	}
	ls, err := cl.LeasesService().List(ctx)
	if err == nil {
		for _, l := range ls {
			leaks = append(leaks, fmt.Sprintf("containerd %s lease %s", ns, l.ID))
			cl.LeasesService().Delete(ctx, l, leases.SynchronousDelete)
		}
	}
	ctrs, _ := cl.Containers(ctx)
	for _, c := range ctrs {
		if t, err := c.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				leaks = append(leaks, fmt.Sprintf("containerd %s task %s: %v", ns, c.ID(), err))
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			leaks = append(leaks, fmt.Sprintf("containerd %s container %s: %v", ns, c.ID(), err))
		}
	}
	imgs, _ := cl.ImageService().List(ctx)
	for i, img := range imgs {
		opts := []images.DeleteOpt{}
		if i == len(imgs)-1 {
			opts = append(opts, images.SynchronousDelete()) // collect garbage once, at the end
		}
		cl.ImageService().Delete(ctx, img.Name, opts...)
	}
	sn := cl.SnapshotService(runtime.Snapshotter)
	sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		leaks = append(leaks, fmt.Sprintf("containerd %s snapshot %s", ns, info.Name))
		sn.Remove(ctx, info.Name)
		return nil
	})
	// Content blobs go with the namespace once nothing references them.
	cs := cl.ContentStore()
	cs.Walk(ctx, func(info content.Info) error { return cs.Delete(ctx, info.Digest) })
	if err := cl.NamespaceService().Delete(ctx, ns); err != nil {
		leaks = append(leaks, fmt.Sprintf("containerd namespace %s: %v", ns, err))
	}
	return leaks
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// unmountBelow unmounts everything mounted under dir, deepest first.
func unmountBelow(dir string) {
	for i := 0; i < 5; i++ {
		all, err := leakcheck.MountPoints()
		if err != nil {
			return
		}
		var mps []string
		for _, mp := range all {
			if strings.HasPrefix(mp, dir+"/") {
				mps = append(mps, mp)
			}
		}
		if len(mps) == 0 {
			return
		}
		sort.Slice(mps, func(i, j int) bool { return strings.Count(mps[i], "/") > strings.Count(mps[j], "/") })
		for _, mp := range mps {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// ContainerdObjects lists what the host's daemon has in its containerd
// namespace: each container's ID with its task's status ("" when it has no
// task), and the snapshots. Tests compare it with the daemon's containers
// to find orphans.
func (h *Host) ContainerdObjects(t testing.TB) (tasks map[string]string, snaps []string) {
	t.Helper()
	if h.containerd == "" {
		t.Fatalf("harness: %s does not use containerd", h.Name)
	}
	cl, err := containerd.New(h.containerd, containerd.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("harness: containerd: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), h.ns.Name), time.Minute)
	defer cancel()
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		t.Fatalf("harness: containerd containers: %v", err)
	}
	tasks = map[string]string{}
	for _, c := range ctrs {
		tasks[c.ID()] = ""
		if task, err := c.Task(ctx, nil); err == nil {
			st, err := task.Status(ctx)
			if err != nil {
				t.Fatalf("harness: containerd task %s: %v", c.ID(), err)
			}
			tasks[c.ID()] = string(st.Status)
		}
	}
	sn := cl.SnapshotService(runtime.Snapshotter)
	if err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind == snapshots.KindActive {
			snaps = append(snaps, info.Name)
		}
		return nil
	}); err != nil {
		t.Fatalf("harness: containerd snapshots: %v", err)
	}
	sort.Strings(snaps)
	return tasks, snaps
}

// orphanedContainerd compares the host's containerd namespace with the
// container records of its (stopped) daemon: a containerd container
// without a record, or a running task of a container recorded as not
// running, is an orphan. A host whose store cannot be read is skipped.
func orphanedContainerd(h *Host) []string {
	path := filepath.Join(h.DataRoot, "vxnet.db")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	st, err := store.Open(path)
	if err != nil {
		return nil
	}
	recs, err := store.List[model.Container](st, store.Containers)
	st.Close()
	if err != nil {
		return nil
	}
	state := map[string]string{}
	for _, c := range recs {
		state[c.ID] = c.State
	}
	cl, err := containerd.New(h.containerd, containerd.WithTimeout(5*time.Second))
	if err != nil {
		return nil
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), h.ns.Name), time.Minute)
	defer cancel()
	ctrs, err := cl.Containers(ctx)
	if err != nil {
		return nil
	}
	var leaks []string
	for _, c := range ctrs {
		rec, ok := state[c.ID()]
		if !ok {
			leaks = append(leaks, fmt.Sprintf("containerd %s container %s (no daemon record)", h.ns.Name, c.ID()))
			continue
		}
		if task, err := c.Task(ctx, nil); err == nil && rec != model.StateRunning {
			if s, err := task.Status(ctx); err == nil && s.Status == containerd.Running {
				leaks = append(leaks, fmt.Sprintf("containerd %s task %s running for a %s container", h.ns.Name, c.ID(), rec))
			}
		}
	}
	return leaks
}
