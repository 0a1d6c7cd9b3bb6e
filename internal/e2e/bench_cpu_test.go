package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vxnet/vxnet/internal/leakcheck"
)

// CPU accounting for benchmarks: the CPU time (user+system, from
// /proc/PID/stat) of this test process's daemons, its shared containerd,
// the runc shims and the containers, split by class. A process's own time
// and the time of the children it reaped (cutime/cstime: nft and other
// helpers for the daemon, the shim starter for containerd, runc create and
// start for a shim) are kept apart. Only processes carrying this test's
// marker in their command line (and the containers under such shims) are
// counted, so the other tests sharing the machine do not show up.

// bnProc is one process's counters in clock ticks.
type bnProc struct {
	class       string
	self, child uint64
}

// bnCPUSnap maps pid -> counters.
type bnCPUSnap map[int]bnProc

var bnClkTck = 100.0 // sysconf(_SC_CLK_TCK) is 100 on Linux

func bnCPUSnapshot() bnCPUSnap {
	marker := []byte(leakcheck.Marker())
	type raw struct {
		ppid        int
		comm        string
		self, child uint64
		marked      bool
	}
	all := map[int]raw{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ... field 14 utime, 15 stime, 16 cutime, 17 cstime
		i, j := bytes.IndexByte(st, '('), bytes.LastIndexByte(st, ')')
		if i < 0 || j < i {
			continue
		}
		f := strings.Fields(string(st[j+1:]))
		if len(f) < 15 {
			continue
		}
		n := func(k int) uint64 { v, _ := strconv.ParseUint(f[k-3], 10, 64); return v }
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		all[pid] = raw{ppid: int(n(4)), comm: string(st[i+1 : j]), self: n(14) + n(15), child: n(16) + n(17),
			marked: bytes.Contains(cmd, marker)}
	}
	classOf := func(r raw) string {
		switch {
		case !r.marked:
			return ""
		case strings.HasPrefix(r.comm, "containerd-shim"):
			return "shim"
		case r.comm == "containerd":
			return "containerd"
		case strings.HasPrefix(r.comm, "vxnet") || r.comm == "nsenter":
			return "daemon"
		}
		return ""
	}
	s := bnCPUSnap{}
	for pid, r := range all {
		c := classOf(r)
		if c == "" {
			if p, ok := all[r.ppid]; ok && classOf(p) == "shim" {
				c = "container"
			} else {
				continue
			}
		}
		s[pid] = bnProc{class: c, self: r.self, child: r.child}
	}
	return s
}

// bnCPUDelta returns CPU seconds per class between two snapshots: for a
// process in both, the difference; for one only in after, all of it.
// Classes: "daemon" (the vxnet daemons, embedded etcd included),
// "daemon children" (what they exec'd and reaped), "containerd",
// "containerd children", "shim", "shim children" (runc), "container".
func bnCPUDelta(before, after bnCPUSnap) map[string]float64 {
	out := map[string]float64{}
	for pid, a := range after {
		b, ok := before[pid]
		if !ok || b.class != a.class || b.self > a.self {
			b = bnProc{}
		}
		out[a.class] += float64(a.self-b.self) / bnClkTck
		out[a.class+" children"] += float64(a.child-min(a.child, b.child)) / bnClkTck
	}
	delete(out, "container children")
	return out
}

// bnCPURows formats deltas as table rows: per class, CPU ms per item for
// each column (one delta, item count and wall time per column), then the
// total and the cores the classes kept busy (CPU s / wall s).
func bnCPURows(deltas []map[string]float64, items []int, walls []time.Duration) [][]string {
	classes := map[string]bool{}
	for _, d := range deltas {
		for c := range d {
			classes[c] = true
		}
	}
	order := make([]string, 0, len(classes))
	for c := range classes {
		order = append(order, c)
	}
	sort.Strings(order)
	var rows [][]string
	totals := make([]float64, len(deltas))
	for _, c := range order {
		row := []string{c}
		for i, d := range deltas {
			row = append(row, fmt.Sprintf("%.1f", 1000*d[c]/float64(items[i])))
			totals[i] += d[c]
		}
		rows = append(rows, row)
	}
	row := []string{"**total**"}
	for i, t := range totals {
		row = append(row, fmt.Sprintf("**%.1f**", 1000*t/float64(items[i])))
	}
	rows = append(rows, row)
	row = []string{"cores busy (CPU s / wall s)"}
	for i, t := range totals {
		row = append(row, fmt.Sprintf("%.2f", t/walls[i].Seconds()))
	}
	return append(rows, row)
}
