package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
)

// Files in a container directory (<ContainersDir>/<id>/). The shim and the
// daemon talk only through these, so a restarted daemon finds everything.
const (
	configFile  = "container.json" // containerConfig, written last by Create
	bundleDir   = "bundle"         // OCI bundle: config.json + rootfs/
	upperDir    = "upper"          // overlay upper layer (the container's changes)
	workDir     = "work"           // overlay work dir
	logFile     = "container.log"  // JSON lines {"stream","time","log"}
	shimFile    = "shim.json"      // shimRecord of the running shim
	shimLogFile = "shim.log"       // the shim's own stdout/stderr
	runcLogFile = "runc.log"       // runc --log (JSON)
	pidFile     = "init.pid"       // runc create --pid-file
	startedFile = "started.json"   // startRecord, written by the shim once running
	exitFile    = "exit.json"      // exitRecord, written by the shim when done
)

// containerConfig is what Create resolved; it is enough to rebuild the
// bundle and remount the rootfs.
type containerConfig struct {
	ID         string    `json:"id"`
	ImageID    string    `json:"imageId,omitempty"`
	Lower      string    `json:"lower"`      // image rootfs (overlay lower dir)
	RootfsMode string    `json:"rootfsMode"` // "overlay" or "copy"
	Args       []string  `json:"args"`
	Env        []string  `json:"env"`
	Hostname   string    `json:"hostname"`
	NetnsPath  string    `json:"netnsPath,omitempty"`
	Mounts     []Mount   `json:"mounts,omitempty"`
	Created    time.Time `json:"created"`
	// Run are the run options (user, limits, confinement...).
	Run model.RunConfig `json:"run"`
}

type shimRecord struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"` // /proc/<pid>/stat field 22, against pid reuse
}

type startRecord struct {
	Pid       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

type exitRecord struct {
	ExitCode   int       `json:"exitCode"`
	FinishedAt time.Time `json:"finishedAt"`
	// Error is set when the container could not be started (runc's message).
	Error string `json:"error,omitempty"`
}

// writeJSON writes v to path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readJSON reads path into v; a missing file returns os.ErrNotExist.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// procStartTime returns the start time (clock ticks since boot) of a live,
// non-zombie process, or ok=false.
func procStartTime(pid int) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false
	}
	return st, true
}

// alive reports whether the recorded shim is still running.
func (r shimRecord) alive() bool {
	st, ok := procStartTime(r.Pid)
	return ok && st == r.StartTime
}

// isMountPoint reports whether path is on a different device than its parent.
func isMountPoint(path string) bool {
	var a, b unix.Stat_t
	if unix.Lstat(path, &a) != nil || unix.Lstat(filepath.Dir(path), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}

// unmountAll unmounts path until nothing is mounted there (bounded).
func unmountAll(path string) error {
	for i := 0; i < 10 && isMountPoint(path); i++ {
		err := unix.Unmount(path, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(path, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("runtime: unmount %s: %w", path, err)
		}
	}
	if isMountPoint(path) {
		return fmt.Errorf("runtime: unmount %s: still mounted", path)
	}
	return nil
}
