// Package leakcheck finds kernel and process objects that a test suite left
// behind. A TestMain takes a Snapshot before the tests and calls Check after
// them; Main does both and makes the run fail on a leak.
//
// What is compared, and which objects count:
//   - named network namespaces (entries of /run/netns) whose name contains a
//     marker;
//   - mount points (/proc/self/mountinfo) whose path contains a marker;
//   - processes whose command line contains a marker, except this process
//     and its ancestors (the go tool, a shell);
//   - every link of the root network namespace (by name);
//   - every nftables table of the root network namespace (needs root and the
//     nft binary; skipped silently otherwise).
//
// Only objects that are new since the snapshot are leaks, so what else lives
// on the machine is never reported. The markers narrow the first three to
// what this test process made: several test processes of the suite may run
// at the same time, so the default marker, Marker(), holds this process's
// id. The harness package puts Marker() in every namespace name, temporary
// directory and daemon argument it makes, so daemons, shims and runc calls
// (which carry those directories in their arguments) match it too. Root
// namespace links and tables are compared without a marker: tests must not
// make any there.
//
// Known blind spot: a container process (e.g. "sleep 1d") carries no marker
// in its command line; the harness kills those by their network namespace.
package leakcheck

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Marker returns the marker of this test process: "vxt<pid>-". It ends in
// a dash so that the marker of pid 12 is not a prefix of pid 123's.
func Marker() string {
	return "vxt" + strconv.Itoa(os.Getpid()) + "-"
}

// Options tunes a snapshot. The zero value is ready to use.
type Options struct {
	// Markers select the namespaces, mounts and processes that are
	// considered. Empty means []string{Marker()}.
	Markers []string
	// Grace is how long Check keeps re-checking before it reports what is
	// still there (teardown may be asynchronous). Zero means 3 s.
	Grace time.Duration
}

// Snapshot is the state recorded before the tests.
type Snapshot struct {
	opts   Options
	before map[string]struct{}
}

// Take records the current state.
func Take(opts Options) *Snapshot {
	if len(opts.Markers) == 0 {
		opts.Markers = []string{Marker()}
	}
	if opts.Grace <= 0 {
		opts.Grace = 3 * time.Second
	}
	s := &Snapshot{opts: opts, before: map[string]struct{}{}}
	for _, o := range s.objects() {
		s.before[o] = struct{}{}
	}
	return s
}

// Leaks returns the objects present now that were not at the snapshot, as
// readable strings such as "netns vxt123-ab12-h0", sorted. It checks once.
func (s *Snapshot) Leaks() []string {
	var leaks []string
	for _, o := range s.objects() {
		if _, ok := s.before[o]; !ok {
			leaks = append(leaks, o)
		}
	}
	sort.Strings(leaks)
	return leaks
}

// Check re-checks for up to the grace period and returns an error listing
// the leaks that remain, or nil.
func (s *Snapshot) Check() error {
	const step = 250 * time.Millisecond
	deadline := time.Now().Add(s.opts.Grace)
	for {
		leaks := s.Leaks()
		if len(leaks) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leakcheck: %d leaked objects:\n\t%s", len(leaks), strings.Join(leaks, "\n\t"))
		}
		time.Sleep(step)
	}
}

// Main runs the tests between a snapshot and a check; a leak makes the run
// fail (exit code 1) even when every test passed. Call it from TestMain.
func Main(m *testing.M) {
	os.Exit(Run(m, Options{}))
}

// Run is Main with options, returning the exit code instead of exiting.
func Run(m *testing.M, opts Options) int {
	s := Take(opts)
	code := m.Run()
	if err := s.Check(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func (s *Snapshot) marked(v string) bool {
	for _, m := range s.opts.Markers {
		if m != "" && strings.Contains(v, m) {
			return true
		}
	}
	return false
}

// objects lists every object the snapshot tracks, each as "kind name".
// Sources that cannot be read are skipped: the check is best effort.
func (s *Snapshot) objects() []string {
	var out []string
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			if s.marked(e.Name()) {
				out = append(out, "netns "+e.Name())
			}
		}
	}
	if mps, err := MountPoints(); err == nil {
		for _, mp := range mps {
			if s.marked(mp) {
				out = append(out, "mount "+mp)
			}
		}
	}
	for pid, cmd := range processes() {
		if s.marked(cmd) {
			out = append(out, fmt.Sprintf("process %d: %s", pid, cmd))
		}
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, i := range ifs {
			out = append(out, "root-netns link "+i.Name)
		}
	}
	if os.Geteuid() == 0 {
		for _, t := range nftTables() {
			out = append(out, "root-netns nft table "+t)
		}
	}
	return out
}

// MountPoints returns the mount points of this process's mount namespace,
// in /proc/self/mountinfo order, with octal escapes (\040) decoded.
func MountPoints() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("leakcheck: read mountinfo: %w", err)
	}
	var mps []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mps = append(mps, unescapeMount(f[4]))
	}
	return mps, nil
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// processes maps pid to command line (NULs as spaces) for every process
// except this one and its ancestors.
func processes() map[int]string {
	skip := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !skip[pid]; pid = parentPID(pid) {
		skip[pid] = true
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := map[int]string{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || skip[pid] {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue // gone, or a kernel thread or zombie
		}
		out[pid] = strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	return out
}

func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command may contain spaces and parentheses: parse after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func nftTables() []string {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil // no nft, or not allowed: skip
	}
	var ts []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "table ") {
			ts = append(ts, strings.TrimPrefix(line, "table "))
		}
	}
	return ts
}
