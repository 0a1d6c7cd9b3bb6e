package runtime

import (
	"context"
	"fmt"
	"sort"

	cg1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cg2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/moby/moby/api/types/container"
)

// The task controls beyond start and stop: pause and resume (the cgroup
// freezer, through containerd), the pids of a task, and its cgroup metrics
// in Docker's stats shape.

// task returns the container's task, or ErrNotRunning when it has none
// that runs.
func (r *Containerd) task(ctx context.Context, id, op string) (containerd.Task, containerd.ProcessStatus, error) {
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, "", notFound(id, err)
	}
	t, err := ctr.Task(ctx, nil)
	if err != nil {
		return nil, "", fmt.Errorf("runtime: %s %s: %w", op, id, ErrNotRunning)
	}
	st, err := t.Status(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("runtime: %s %s: %w", op, id, err)
	}
	if st.Status != containerd.Running && st.Status != containerd.Paused && st.Status != containerd.Pausing {
		return nil, "", fmt.Errorf("runtime: %s %s: %w", op, id, ErrNotRunning)
	}
	return t, st.Status, nil
}

// Pause freezes every process of the container. Pausing a paused
// container is a no-op.
func (r *Containerd) Pause(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	t, st, err := r.task(ctx, id, "pause")
	if err != nil || st == containerd.Paused {
		return err
	}
	if err := t.Pause(ctx); err != nil {
		return fmt.Errorf("runtime: pause %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container. Resuming a running one is a no-op.
func (r *Containerd) Resume(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	t, st, err := r.task(ctx, id, "resume")
	if err != nil || st == containerd.Running {
		return err
	}
	if err := t.Resume(ctx); err != nil {
		return fmt.Errorf("runtime: resume %s: %w", id, err)
	}
	return nil
}

// Pids returns the host pids of the container's processes, sorted.
func (r *Containerd) Pids(ctx context.Context, id string) ([]int, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	ctx = r.ctx(ctx)
	t, _, err := r.task(ctx, id, "pids")
	if err != nil {
		return nil, err
	}
	infos, err := t.Pids(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("runtime: pids %s: %w", id, ErrNotRunning)
		}
		return nil, fmt.Errorf("runtime: pids %s: %w", id, err)
	}
	var out []int
	for _, p := range infos {
		out = append(out, int(p.Pid))
	}
	sort.Ints(out)
	return out, nil
}

// Metrics reads the container's cgroup statistics (cgroup v1 or v2, as the
// shim reports them) into Docker's shape: CPU, memory, pids and block I/O.
// The caller adds what is not the cgroup's (networks, system CPU, names).
func (r *Containerd) Metrics(ctx context.Context, id string) (container.StatsResponse, error) {
	var s container.StatsResponse
	if err := checkID(id); err != nil {
		return s, err
	}
	ctx = r.ctx(ctx)
	t, _, err := r.task(ctx, id, "stats")
	if err != nil {
		return s, err
	}
	m, err := t.Metrics(ctx)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return s, fmt.Errorf("runtime: stats %s: %w", id, ErrNotRunning)
		}
		return s, fmt.Errorf("runtime: stats %s: %w", id, err)
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return s, fmt.Errorf("runtime: stats %s: %w", id, err)
	}
	switch x := v.(type) {
	case *cg1.Metrics:
		statsV1(&s, x)
	case *cg2.Metrics:
		statsV2(&s, x)
	default:
		return s, fmt.Errorf("runtime: stats %s: unexpected metrics type %T", id, v)
	}
	return s, nil
}

// statsV1 fills Docker's stats from cgroup v1 metrics (as dockerd does).
func statsV1(s *container.StatsResponse, m *cg1.Metrics) {
	if c := m.CPU; c != nil {
		if u := c.Usage; u != nil {
			s.CPUStats.CPUUsage = container.CPUUsage{TotalUsage: u.Total, PercpuUsage: u.PerCPU,
				UsageInKernelmode: u.Kernel, UsageInUsermode: u.User}
		}
		if th := c.Throttling; th != nil {
			s.CPUStats.ThrottlingData = container.ThrottlingData{Periods: th.Periods,
				ThrottledPeriods: th.ThrottledPeriods, ThrottledTime: th.ThrottledTime}
		}
	}
	if mem := m.Memory; mem != nil {
		s.MemoryStats.Stats = map[string]uint64{
			"cache": mem.Cache, "rss": mem.RSS, "rss_huge": mem.RSSHuge, "mapped_file": mem.MappedFile,
			"dirty": mem.Dirty, "writeback": mem.Writeback, "pgpgin": mem.PgPgIn, "pgpgout": mem.PgPgOut,
			"pgfault": mem.PgFault, "pgmajfault": mem.PgMajFault, "inactive_anon": mem.InactiveAnon,
			"active_anon": mem.ActiveAnon, "inactive_file": mem.InactiveFile, "active_file": mem.ActiveFile,
			"unevictable": mem.Unevictable, "hierarchical_memory_limit": mem.HierarchicalMemoryLimit,
			"hierarchical_memsw_limit": mem.HierarchicalSwapLimit, "total_cache": mem.TotalCache,
			"total_rss": mem.TotalRSS, "total_rss_huge": mem.TotalRSSHuge, "total_mapped_file": mem.TotalMappedFile,
			"total_dirty": mem.TotalDirty, "total_writeback": mem.TotalWriteback, "total_pgpgin": mem.TotalPgPgIn,
			"total_pgpgout": mem.TotalPgPgOut, "total_pgfault": mem.TotalPgFault, "total_pgmajfault": mem.TotalPgMajFault,
			"total_inactive_anon": mem.TotalInactiveAnon, "total_active_anon": mem.TotalActiveAnon,
			"total_inactive_file": mem.TotalInactiveFile, "total_active_file": mem.TotalActiveFile,
			"total_unevictable": mem.TotalUnevictable,
		}
		if u := mem.Usage; u != nil {
			s.MemoryStats.Usage, s.MemoryStats.MaxUsage, s.MemoryStats.Failcnt, s.MemoryStats.Limit = u.Usage, u.Max, u.Failcnt, u.Limit
		}
	}
	if p := m.Pids; p != nil {
		s.PidsStats = container.PidsStats{Current: p.Current, Limit: p.Limit}
	}
	if b := m.Blkio; b != nil {
		s.BlkioStats = container.BlkioStats{
			IoServiceBytesRecursive: blkio(b.IoServiceBytesRecursive), IoServicedRecursive: blkio(b.IoServicedRecursive),
			IoQueuedRecursive: blkio(b.IoQueuedRecursive), IoServiceTimeRecursive: blkio(b.IoServiceTimeRecursive),
			IoWaitTimeRecursive: blkio(b.IoWaitTimeRecursive), IoMergedRecursive: blkio(b.IoMergedRecursive),
			IoTimeRecursive: blkio(b.IoTimeRecursive), SectorsRecursive: blkio(b.SectorsRecursive),
		}
	}
}

func blkio(in []*cg1.BlkIOEntry) []container.BlkioStatEntry {
	out := []container.BlkioStatEntry{}
	for _, e := range in {
		out = append(out, container.BlkioStatEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}

// statsV2 fills Docker's stats from cgroup v2 metrics (as dockerd does:
// microseconds become nanoseconds, memory stats keep v2's names).
func statsV2(s *container.StatsResponse, m *cg2.Metrics) {
	if c := m.CPU; c != nil {
		s.CPUStats.CPUUsage = container.CPUUsage{TotalUsage: c.UsageUsec * 1000,
			UsageInKernelmode: c.SystemUsec * 1000, UsageInUsermode: c.UserUsec * 1000}
		s.CPUStats.ThrottlingData = container.ThrottlingData{Periods: c.NrPeriods,
			ThrottledPeriods: c.NrThrottled, ThrottledTime: c.ThrottledUsec * 1000}
	}
	if mem := m.Memory; mem != nil {
		s.MemoryStats.Stats = map[string]uint64{
			"anon": mem.Anon, "file": mem.File, "kernel_stack": mem.KernelStack, "slab": mem.Slab,
			"sock": mem.Sock, "shmem": mem.Shmem, "file_mapped": mem.FileMapped, "file_dirty": mem.FileDirty,
			"file_writeback": mem.FileWriteback, "anon_thp": mem.AnonThp, "inactive_anon": mem.InactiveAnon,
			"active_anon": mem.ActiveAnon, "inactive_file": mem.InactiveFile, "active_file": mem.ActiveFile,
			"unevictable": mem.Unevictable, "slab_reclaimable": mem.SlabReclaimable,
			"slab_unreclaimable": mem.SlabUnreclaimable, "pgfault": mem.Pgfault, "pgmajfault": mem.Pgmajfault,
			"workingset_refault": mem.WorkingsetRefault, "workingset_activate": mem.WorkingsetActivate,
			"workingset_nodereclaim": mem.WorkingsetNodereclaim, "pgrefill": mem.Pgrefill, "pgscan": mem.Pgscan,
			"pgsteal": mem.Pgsteal, "pgactivate": mem.Pgactivate, "pgdeactivate": mem.Pgdeactivate,
			"pglazyfree": mem.Pglazyfree, "pglazyfreed": mem.Pglazyfreed, "thp_fault_alloc": mem.ThpFaultAlloc,
			"thp_collapse_alloc": mem.ThpCollapseAlloc,
		}
		s.MemoryStats.Usage, s.MemoryStats.Limit = mem.Usage, mem.UsageLimit
		if ev := m.MemoryEvents; ev != nil {
			s.MemoryStats.Failcnt = ev.Oom
		}
	}
	if p := m.Pids; p != nil {
		s.PidsStats = container.PidsStats{Current: p.Current, Limit: p.Limit}
	}
	if io := m.Io; io != nil {
		var bytes []container.BlkioStatEntry
		for _, e := range io.Usage {
			bytes = append(bytes,
				container.BlkioStatEntry{Major: e.Major, Minor: e.Minor, Op: "read", Value: e.Rbytes},
				container.BlkioStatEntry{Major: e.Major, Minor: e.Minor, Op: "write", Value: e.Wbytes})
		}
		s.BlkioStats.IoServiceBytesRecursive = bytes
	}
}
