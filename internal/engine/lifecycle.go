package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/sys/signal"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/store"
)

// Pause, unpause, top and stats: the container controls that go to the
// runtime's task (the cgroup freezer, the task's pids, its cgroup
// metrics). A paused container is running (State.Running) with Paused set;
// exec and attach refuse it, stop and kill thaw it after signalling so the
// signal is delivered.

func (e *Engine) controlRuntime() (ControlRuntime, error) {
	cr, ok := e.opts.Runtime.(ControlRuntime)
	if !ok {
		return nil, errf(model.ErrInvalid, "pause, unpause, top and stats need the containerd runtime (the daemon runs with --runtime runc)")
	}
	return cr, nil
}

// PauseContainer freezes a running container (docker pause).
func (e *Engine) PauseContainer(ctx context.Context, ref string) error {
	return e.setPaused(ctx, ref, true)
}

// UnpauseContainer thaws a paused container (docker unpause).
func (e *Engine) UnpauseContainer(ctx context.Context, ref string) error {
	return e.setPaused(ctx, ref, false)
}

func (e *Engine) setPaused(ctx context.Context, ref string, pause bool) error {
	cr, err := e.controlRuntime()
	if err != nil {
		return err
	}
	c, unlock, err := e.lockContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	switch {
	case c.State != model.StateRunning:
		return errf(model.ErrConflict, "container %s is not running", c.ID)
	case pause && c.Paused:
		return errf(model.ErrConflict, "container %s is already paused", c.ID)
	case !pause && !c.Paused:
		return errf(model.ErrConflict, "Container %s is not paused", c.ID)
	}
	op, action := cr.Pause, events.ActionPause
	if !pause {
		op, action = cr.Resume, events.ActionUnPause
	}
	if err := op(ctx, c.ID); err != nil {
		return fmt.Errorf("cannot %s container %s: %w", action, c.ID, err)
	}
	if err := e.setPausedRecord(c.ID, pause); err != nil {
		return err
	}
	e.containerEvent(c, action, nil)
	return nil
}

// setPausedRecord records whether the container is paused (store, then
// memory).
func (e *Engine) setPausedRecord(id string, paused bool) error {
	c, ok := e.containerByID(id)
	if !ok {
		return nil
	}
	c.Paused = paused
	if err := e.opts.Store.Put(store.Containers, id, c); err != nil {
		return fmt.Errorf("record container state: %w", err)
	}
	e.mu.Lock()
	if cur, ok := e.containers[id]; ok {
		cur.Paused = paused
		e.containers[id] = cur
	}
	e.mu.Unlock()
	return nil
}

// thaw resumes a paused container after a stop or kill signal, so the
// signal is delivered (as dockerd does).
func (e *Engine) thaw(ctx context.Context, c model.Container) {
	if !c.Paused {
		return
	}
	if cr, ok := e.opts.Runtime.(ControlRuntime); ok {
		if err := cr.Resume(ctx, c.ID); err != nil {
			e.log.Warn("resume a paused container after a signal", "name", c.Name, "err", err)
		}
	}
}

// psPIDArg finds "KEY=PID..." in ps arguments: only "pid" may be renamed
// (Docker's rule; its output must keep a PID column to filter on).
var psPIDArg = regexp.MustCompile(`\s+([^\s]*)=\s*(PID[^\s]*)`)

// TopContainer runs ps on the host with psArgs (default -ef) and keeps the
// lines of the container's processes, as docker top does.
func (e *Engine) TopContainer(ctx context.Context, ref, psArgs string) (container.TopResponse, error) {
	cr, err := e.controlRuntime()
	if err != nil {
		return container.TopResponse{}, err
	}
	c, err := e.lookupContainer(ref)
	if err != nil {
		return container.TopResponse{}, err
	}
	if c.State != model.StateRunning {
		return container.TopResponse{}, errf(model.ErrConflict, "container %s is not running", c.ID)
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	for _, g := range psPIDArg.FindAllStringSubmatch(psArgs, -1) {
		if g[1] != "pid" {
			return container.TopResponse{}, errf(model.ErrInvalid, "specifying \"%s=%s\" is not allowed", g[1], g[2])
		}
	}
	pids, err := cr.Pids(ctx, c.ID)
	if err != nil {
		return container.TopResponse{}, fmt.Errorf("top %s: %w", c.Name, err)
	}
	args := strings.Fields(psArgs)
	// First only the container's processes (-q PIDS); some ps options
	// (f, -C) do not go with -q: then all of them, filtered here.
	q := make([]string, len(pids))
	for i, p := range pids {
		q[i] = strconv.Itoa(p)
	}
	out, err := exec.CommandContext(ctx, "ps", append(slices.Clone(args), "-q"+strings.Join(q, ","))...).Output()
	if err != nil {
		out, err = exec.CommandContext(ctx, "ps", args...).Output()
	}
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			if line, _, _ := strings.Cut(string(ee.Stderr), "\n"); line != "" {
				err = errors.New(line)
			}
		}
		return container.TopResponse{}, fmt.Errorf("ps: %w", err)
	}
	return parsePS(out, pids)
}

// parsePS keeps the header and the lines of ps output whose PID column is
// one of pids (and the thread lines, PID "-", that follow one); the last
// column takes the rest of the line (the command, with its spaces).
func parsePS(out []byte, pids []int) (container.TopResponse, error) {
	lines := strings.Split(string(out), "\n")
	titles := strings.Fields(lines[0])
	col := slices.Index(titles, "PID")
	if col < 0 {
		return container.TopResponse{}, errf(model.ErrInvalid, "Couldn't find PID field in ps output")
	}
	resp := container.TopResponse{Titles: titles, Processes: [][]string{}}
	add := func(fields []string) {
		row := slices.Clone(fields[:len(titles)-1])
		resp.Processes = append(resp.Processes, append(row, strings.Join(fields[len(titles)-1:], " ")))
	}
	inContainer := false
	for _, line := range lines[1:] {
		fields := strings.Fields(line)
		if len(fields) < len(titles) {
			continue
		}
		if fields[col] == "-" {
			if inContainer {
				add(fields)
			}
			continue
		}
		p, err := strconv.Atoi(fields[col])
		if err != nil {
			return container.TopResponse{}, fmt.Errorf("Unexpected pid '%s': %s", fields[col], err)
		}
		inContainer = slices.Contains(pids, p)
		if inContainer {
			add(fields)
		}
	}
	return resp, nil
}

// ContainerStats returns one sample of the container's statistics in
// Docker's shape: the cgroup's CPU, memory, pids and block I/O, the host's
// CPU time and online CPUs, and the counters of the container's interfaces.
// A container that is not running gives an empty sample with its name and
// ID (as dockerd does).
func (e *Engine) ContainerStats(ctx context.Context, ref string) (container.StatsResponse, error) {
	cr, err := e.controlRuntime()
	if err != nil {
		return container.StatsResponse{}, err
	}
	c, err := e.lookupContainer(ref)
	if err != nil {
		return container.StatsResponse{}, err
	}
	empty := container.StatsResponse{ID: c.ID, Name: "/" + c.Name}
	if c.State != model.StateRunning {
		return empty, nil
	}
	s, err := cr.Metrics(ctx, c.ID)
	if err != nil {
		if errors.Is(err, model.ErrConflict) {
			return empty, nil // exited meanwhile
		}
		return container.StatsResponse{}, fmt.Errorf("stats %s: %w", c.Name, err)
	}
	s.ID, s.Name, s.OSType, s.Read = c.ID, "/"+c.Name, "linux", e.now()
	s.CPUStats.SystemUsage = systemCPUUsage()
	s.CPUStats.OnlineCPUs = uint32(runtime.NumCPU())
	if mem := machineMemory(); s.MemoryStats.Limit == 0 || (mem > 0 && s.MemoryStats.Limit > mem) {
		s.MemoryStats.Limit = mem
	}
	e.mu.Lock()
	sb := e.sandboxes[c.ID]
	e.mu.Unlock()
	if sb.NetnsPath != "" {
		s.Networks = interfaceStats(sb.NetnsPath)
	}
	return s, nil
}

// systemCPUUsage is the host's CPU time in nanoseconds (the cpu line of
// /proc/stat, in clock ticks of 1/100 s), as dockerd reports it.
func systemCPUUsage() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks uint64
	for _, v := range f[1:8] {
		n, _ := strconv.ParseUint(v, 10, 64)
		ticks += n
	}
	return ticks * uint64(time.Second/100)
}

// machineMemory is the host's memory in bytes (0 if unknown).
func machineMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			n, _ := strconv.ParseUint(f[1], 10, 64)
			return n * 1024
		}
	}
	return 0
}

// interfaceStats reads the counters of the interfaces in a sandbox (all
// but lo), by interface name.
func interfaceStats(nsPath string) map[string]container.NetworkStats {
	out := map[string]container.NetworkStats{}
	h, err := netns.Handle(nsPath)
	if err != nil {
		return out
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return out
	}
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || a.Statistics == nil {
			continue
		}
		st := a.Statistics
		out[a.Name] = container.NetworkStats{RxBytes: st.RxBytes, RxPackets: st.RxPackets, RxErrors: st.RxErrors,
			RxDropped: st.RxDropped, TxBytes: st.TxBytes, TxPackets: st.TxPackets, TxErrors: st.TxErrors,
			TxDropped: st.TxDropped}
	}
	return out
}

// recordStartError keeps why a start failed and dockerd's exit code for it
// (127: command not found, 126: cannot be run, 128: other), in the state
// the container had: a failed first start leaves it created.
func (e *Engine) recordStartError(c model.Container, err error) {
	msg := err.Error()
	switch low := strings.ToLower(msg); {
	case strings.Contains(low, "executable file not found"), strings.Contains(low, "no such file or directory"):
		c.ExitCode = 127
	case strings.Contains(low, "permission denied"):
		c.ExitCode = 126
	default:
		c.ExitCode = 128
	}
	c.Error = msg
	if err := e.opts.Store.Put(store.Containers, c.ID, c); err != nil {
		e.log.Warn("record a failed start", "name", c.Name, "err", err)
		return
	}
	e.mu.Lock()
	if cur, ok := e.containers[c.ID]; ok && cur.State == c.State {
		cur.ExitCode, cur.Error = c.ExitCode, c.Error
		e.containers[c.ID] = cur
	}
	e.mu.Unlock()
}

// stopSignalOf is the container's stop signal (SIGTERM when none is set
// or it does not parse).
func stopSignalOf(c model.Container) syscall.Signal {
	if c.Run.StopSignal != "" {
		if sig, err := signal.ParseSignal(c.Run.StopSignal); err == nil {
			return sig
		}
	}
	return syscall.SIGTERM
}
