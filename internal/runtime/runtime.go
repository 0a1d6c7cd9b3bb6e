// Package runtime runs containers with runc from the local image store
// (package runtime/image).
//
// Each container has a directory <ContainersDir>/<id>/ holding an OCI
// bundle, an overlayfs rootfs (lower = image rootfs, upper/work in the
// container directory; a full copy when overlay cannot be mounted), its log
// and the records its shim writes. Every runc call uses --root RuncRoot, so
// daemons with different roots never see each other's containers.
//
// Processes: Start launches a shim (a re-exec of the vxnet binary, see
// ShimMain) in its own session; the shim runs `runc create` + `runc start`,
// copies the container's output into the log, waits for it and records the
// exit. Containers and shims survive the daemon being killed; a new
// Runtime on the same directories finds them through runc and the records.
//
// cgroups: CgroupsPath is "<CgroupParent>/<id>". The default parent is the
// relative "vxnet-<12 hex of sha256(RuncRoot)>", which runc (cgroupfs)
// places under the cgroup of the process that starts the container, so
// containers stay inside whatever limits the daemon runs under; set an
// absolute CgroupParent (e.g. "/vxnet") to place them at the hierarchy root.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/runtime/image"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound   = errors.New("no such container")
	ErrNotRunning = errors.New("container is not running")
	ErrInvalid    = errors.New("invalid argument")
)

// Status values of State.
const (
	StatusCreated = "created" // created, never started (or starting)
	StatusRunning = "running"
	StatusStopped = "stopped"
	StatusUnknown = "unknown"
)

// Options configure a Runtime.
type Options struct {
	// RuncRoot is runc's state directory (runc --root), one per daemon,
	// under its exec root.
	RuncRoot string
	// ContainersDir holds one directory per container.
	ContainersDir string
	// ShimCommand starts the shim, e.g. {"/usr/bin/vxnet", "shim"}; the
	// runtime appends the shim flags. It must end up calling ShimMain.
	ShimCommand []string
	// RuncPath is the runc binary; "" looks up "runc" in PATH.
	RuncPath string
	// Images resolves Spec.Image; may be nil if every Spec sets Rootfs.
	Images *image.Store
	// CgroupParent; "" means "vxnet-<hash of RuncRoot>" (see package doc).
	CgroupParent string
	// StartTimeout bounds how long Start waits for runc; 0 means 30s.
	StartTimeout time.Duration
	Logger       *slog.Logger
}

// Mount is a bind mount into the container.
type Mount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	// Propagation: rprivate (""), private, rshared, shared, rslave, slave.
	Propagation string `json:"propagation,omitempty"`
}

// Spec describes a container to create.
type Spec struct {
	ID string // runc-valid; vxnet uses 64 hex characters like Docker
	// Image is an image reference resolved through Options.Images. Rootfs,
	// if set, is used instead as the overlay lower directory.
	Image  string
	Rootfs string
	// Args is the command; empty means the image's Cmd (an error if the
	// image has none).
	Args []string
	// Env is added to the image's environment (same name: Env wins). PATH
	// defaults to the usual value; HOSTNAME is set.
	Env []string
	// Hostname defaults to the first 12 characters of ID.
	Hostname string
	// NetnsPath is the pinned network namespace to join; "" shares the
	// host's network namespace.
	NetnsPath string
	// Mounts are bind mounts (e.g. /etc/hosts, /etc/resolv.conf, /etc/hostname).
	Mounts []Mount
	// Terminal gives the process a TTY (docker run -t); Stdin gives it a
	// stdin that attached clients write to (docker run -i). containerd
	// runtime only.
	Terminal, Stdin bool
	// ConsoleSize is the TTY's initial {height, width}; 0 leaves it unset.
	ConsoleSize [2]uint
	// Run are the process, resource and security options (user, working
	// directory, limits, capabilities, seccomp, tmpfs, init...).
	Run model.RunConfig
}

// State is a container's status.
type State struct {
	Status     string // StatusCreated, StatusRunning, StatusStopped or StatusUnknown
	Pid        int    // host pid of the init while running
	ExitCode   int    // when stopped; 255 if the exit could not be recorded
	StartedAt  time.Time
	FinishedAt time.Time
	// Error is the reason the last start failed, if it did.
	Error string
	// Paused: running, with its processes frozen.
	Paused bool
}

// Runtime runs containers. Methods are safe for concurrent use; lifecycle
// calls (Create, Start, Stop, Delete) on one ID are serialised.
type Runtime struct {
	opts     Options
	log      *slog.Logger
	runcPath string
	cgParent string

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New checks the options and returns a Runtime. It creates RuncRoot and
// ContainersDir if needed.
func New(opts Options) (*Runtime, error) {
	if opts.RuncRoot == "" || opts.ContainersDir == "" || len(opts.ShimCommand) == 0 {
		return nil, fmt.Errorf("runtime: new: RuncRoot, ContainersDir and ShimCommand are required: %w", ErrInvalid)
	}
	r := &Runtime{opts: opts, log: opts.Logger, locks: map[string]*sync.Mutex{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.opts.StartTimeout == 0 {
		r.opts.StartTimeout = 30 * time.Second
	}
	r.runcPath = opts.RuncPath
	if r.runcPath == "" {
		p, err := exec.LookPath("runc")
		if err != nil {
			p = "/usr/sbin/runc"
			if _, serr := os.Stat(p); serr != nil {
				return nil, fmt.Errorf("runtime: new: find runc: %w", err)
			}
		}
		r.runcPath = p
	}
	r.cgParent = opts.CgroupParent
	if r.cgParent == "" {
		sum := sha256.Sum256([]byte(opts.RuncRoot))
		r.cgParent = "vxnet-" + hex.EncodeToString(sum[:])[:12]
	}
	for _, d := range []string{opts.RuncRoot, opts.ContainersDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: new: %w", err)
		}
	}
	return r, nil
}

// CgroupParent returns the cgroup parent used for containers.
func (r *Runtime) CgroupParent() string { return r.cgParent }

func (r *Runtime) lock(id string) func() {
	r.mu.Lock()
	l, ok := r.locks[id]
	if !ok {
		l = &sync.Mutex{}
		r.locks[id] = l
	}
	r.mu.Unlock()
	l.Lock()
	return l.Unlock
}

var idRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func checkID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("runtime: invalid container ID %q: %w", id, ErrInvalid)
	}
	return nil
}

func (r *Runtime) dir(id string) string { return filepath.Join(r.opts.ContainersDir, id) }

// containerDir returns the directory of an existing container.
func (r *Runtime) containerDir(id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	d := r.dir(id)
	if _, err := os.Stat(filepath.Join(d, configFile)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("runtime: container %s: %w", id, ErrNotFound)
		}
		return "", fmt.Errorf("runtime: container %s: %w", id, err)
	}
	return d, nil
}

func (r *Runtime) loadConfig(id string) (containerConfig, string, error) {
	d, err := r.containerDir(id)
	if err != nil {
		return containerConfig{}, "", err
	}
	var c containerConfig
	if err := readJSON(filepath.Join(d, configFile), &c); err != nil {
		return containerConfig{}, "", fmt.Errorf("runtime: read config of %s: %w", id, err)
	}
	return c, d, nil
}

// completeConfig fills in what both runtimes take from the request and its
// image alike: the command (the image's when the request has none), the
// hostname (the short ID when none is given) and the environment; and it
// refuses relative mount and netns paths.
func completeConfig(c *containerConfig, s Spec, img image.Image) error {
	c.Args = s.Args
	if len(c.Args) == 0 {
		c.Args = img.Config.Cmd
	}
	if len(c.Args) == 0 {
		return fmt.Errorf("runtime: create %s: no command specified: %w", s.ID, ErrInvalid)
	}
	if c.Hostname == "" {
		c.Hostname = s.ID[:min(12, len(s.ID))]
	}
	c.Env = mergeEnv(img.Config.Env, s.Env, c.Hostname)
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Destination) || !filepath.IsAbs(m.Source) {
			return fmt.Errorf("runtime: create %s: mount %s -> %s: paths must be absolute: %w", s.ID, m.Source, m.Destination, ErrInvalid)
		}
	}
	if s.NetnsPath != "" && !filepath.IsAbs(s.NetnsPath) {
		return fmt.Errorf("runtime: create %s: netns path %q must be absolute: %w", s.ID, s.NetnsPath, ErrInvalid)
	}
	return nil
}

// Create writes the bundle and mounts the rootfs. Creating an existing
// container is a no-op (the existing one is kept as it is).
func (r *Runtime) Create(ctx context.Context, s Spec) error {
	if err := checkID(s.ID); err != nil {
		return err
	}
	defer r.lock(s.ID)()
	d := r.dir(s.ID)
	if _, err := os.Stat(filepath.Join(d, configFile)); err == nil {
		return nil
	}
	c := containerConfig{ID: s.ID, Lower: s.Rootfs, Hostname: s.Hostname, NetnsPath: s.NetnsPath, Mounts: s.Mounts, Created: time.Now().UTC(), Run: s.Run}
	var img image.Image
	if c.Lower == "" {
		if r.opts.Images == nil {
			return fmt.Errorf("runtime: create %s: no image store to resolve %q: %w", s.ID, s.Image, ErrInvalid)
		}
		var err error
		if img, err = r.opts.Images.Get(s.Image); err != nil {
			return err
		}
		c.Lower, c.ImageID = img.Rootfs, img.ID
	}
	if err := completeConfig(&c, s, img); err != nil {
		return err
	}
	if fi, err := os.Stat(c.Lower); err != nil || !fi.IsDir() {
		return fmt.Errorf("runtime: create %s: rootfs %s is not a directory: %w", s.ID, c.Lower, ErrInvalid)
	}

	err := func() error {
		for _, sub := range []string{filepath.Join(bundleDir, "rootfs"), upperDir, workDir} {
			if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
				return err
			}
		}
		mode, err := r.mountRootfs(ctx, c, d)
		if err != nil {
			return err
		}
		c.RootfsMode = mode
		spec := ociSpec(c, r.cgParent+"/"+c.ID)
		rootfs := filepath.Join(d, bundleDir, "rootfs")
		if err := applyRunConfig(spec, c.Run, c.NetnsPath == "", func(f func(string) error) error { return f(rootfs) }); err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(d, bundleDir, "config.json"), spec); err != nil {
			return err
		}
		return writeJSON(filepath.Join(d, configFile), c)
	}()
	if err != nil {
		unmountAll(filepath.Join(d, bundleDir, "rootfs"))
		os.RemoveAll(d)
		return fmt.Errorf("runtime: create %s: %w", s.ID, err)
	}
	r.log.Debug("container created", "id", s.ID, "rootfs", c.RootfsMode)
	return nil
}

// mountRootfs mounts the overlay (or, if overlayfs refuses, copies the
// lower directory once) and returns the mode used.
func (r *Runtime) mountRootfs(ctx context.Context, c containerConfig, d string) (string, error) {
	target := filepath.Join(d, bundleDir, "rootfs")
	if c.RootfsMode == "copy" || isMountPoint(target) {
		return c.RootfsMode, nil
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", c.Lower, filepath.Join(d, upperDir), filepath.Join(d, workDir))
	err := unix.Mount("overlay", target, "overlay", 0, opts)
	if err == nil {
		return "overlay", nil
	}
	if c.RootfsMode == "overlay" {
		return "", fmt.Errorf("mount overlay: %w", err)
	}
	r.log.Warn("overlay mount failed; copying the image rootfs", "id", c.ID, "err", err)
	if out, cerr := exec.CommandContext(ctx, "cp", "-a", c.Lower+"/.", target+"/").CombinedOutput(); cerr != nil {
		return "", fmt.Errorf("mount overlay: %v; copy rootfs: %v: %s", err, cerr, strings.TrimSpace(string(out)))
	}
	return "copy", nil
}

// Start starts the container's process (again, if it ran before: the old
// runc state is removed, the rootfs kept) and returns its host pid once
// runc reports it running. A failure to start returns runc's message.
// Starting a running container returns its pid.
func (r *Runtime) Start(ctx context.Context, id string) (int, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	defer r.lock(id)()
	c, d, err := r.loadConfig(id)
	if err != nil {
		return 0, err
	}
	if st, err := r.State(ctx, id); err == nil && st.Status == StatusRunning {
		return st.Pid, nil
	}
	// A previous shim may still be finishing (recording an exit).
	r.stopShim(ctx, d, 10*time.Second)
	if err := r.runcDelete(ctx, id); err != nil {
		return 0, err
	}
	if _, err := r.mountRootfs(ctx, c, d); err != nil {
		return 0, fmt.Errorf("runtime: start %s: %w", id, err)
	}
	for _, f := range []string{exitFile, startedFile, pidFile, shimFile} {
		os.Remove(filepath.Join(d, f))
	}
	shimLog, err := os.OpenFile(filepath.Join(d, shimLogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("runtime: start %s: %w", id, err)
	}
	args := append(append([]string(nil), r.opts.ShimCommand[1:]...),
		"-id", id, "-dir", d, "-runc", r.runcPath, "-root", r.opts.RuncRoot)
	cmd := exec.Command(r.opts.ShimCommand[0], args...)
	cmd.Stdout, cmd.Stderr = shimLog, shimLog // stdin: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	shimLog.Close()
	if err != nil {
		return 0, fmt.Errorf("runtime: start %s: start shim: %w", id, err)
	}
	shimDone := make(chan struct{})
	go func() { cmd.Wait(); close(shimDone) }() // reap it if we outlive it
	stt, _ := procStartTime(cmd.Process.Pid)
	if err := writeJSON(filepath.Join(d, shimFile), shimRecord{Pid: cmd.Process.Pid, StartTime: stt}); err != nil {
		return 0, fmt.Errorf("runtime: start %s: %w", id, err)
	}

	deadline := time.NewTimer(r.opts.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var started startRecord
		if readJSON(filepath.Join(d, startedFile), &started) == nil {
			r.log.Info("container started", "id", id, "pid", started.Pid)
			return started.Pid, nil
		}
		var ex exitRecord
		if readJSON(filepath.Join(d, exitFile), &ex) == nil && ex.Error != "" {
			return 0, fmt.Errorf("runtime: start %s: %s", id, ex.Error)
		}
		select {
		case <-shimDone:
			// Look at the records once more: the shim may have just written them.
			if readJSON(filepath.Join(d, startedFile), &started) == nil {
				return started.Pid, nil
			}
			if readJSON(filepath.Join(d, exitFile), &ex) == nil && ex.Error != "" {
				return 0, fmt.Errorf("runtime: start %s: %s", id, ex.Error)
			}
			return 0, fmt.Errorf("runtime: start %s: shim exited: %s", id, tail(filepath.Join(d, shimLogFile)))
		case <-ctx.Done():
			return 0, fmt.Errorf("runtime: start %s: %w", id, ctx.Err())
		case <-deadline.C:
			return 0, fmt.Errorf("runtime: start %s: not running after %s", id, r.opts.StartTimeout)
		case <-tick.C:
		}
	}
}

// tail returns the last lines of a file, for error messages.
func tail(p string) string {
	b, _ := os.ReadFile(p)
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}

// stopShim waits up to d for the recorded shim to exit, then kills it.
func (r *Runtime) stopShim(ctx context.Context, dir string, d time.Duration) {
	var sh shimRecord
	if readJSON(filepath.Join(dir, shimFile), &sh) != nil {
		return
	}
	deadline := time.Now().Add(d)
	for sh.alive() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if sh.alive() {
		r.log.Warn("killing shim that did not exit", "dir", dir, "pid", sh.Pid)
		unix.Kill(sh.Pid, unix.SIGKILL)
		for i := 0; i < 100 && sh.alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// State reports the container's status. It works for containers started
// by an earlier Runtime (daemon) too.
func (r *Runtime) State(ctx context.Context, id string) (State, error) {
	d, err := r.containerDir(id)
	if err != nil {
		return State{}, err
	}
	var st State
	var started startRecord
	if readJSON(filepath.Join(d, startedFile), &started) == nil {
		st.StartedAt = started.StartedAt
	}
	var ex exitRecord
	if readJSON(filepath.Join(d, exitFile), &ex) == nil {
		st.Status, st.ExitCode, st.FinishedAt, st.Error = StatusStopped, ex.ExitCode, ex.FinishedAt, ex.Error
		return st, nil
	}
	var sh shimRecord
	shimAlive := readJSON(filepath.Join(d, shimFile), &sh) == nil && sh.alive()
	rs, err := r.runcState(ctx, id)
	switch {
	case errors.Is(err, errNoRuncContainer):
		if shimAlive || started.Pid == 0 {
			st.Status = StatusCreated // starting, or never started
			return st, nil
		}
		st.Status, st.ExitCode = StatusStopped, 255 // ran, exit not recorded
		return st, nil
	case err != nil:
		st.Status = StatusUnknown
		return st, fmt.Errorf("runtime: state %s: %w", id, err)
	}
	switch rs.Status {
	case "running", "paused":
		st.Status, st.Pid = StatusRunning, rs.Pid
	case "created", "creating":
		st.Status = StatusCreated
	case "stopped":
		if shimAlive {
			// The shim is about to record the exit; report it once it has.
			for i := 0; i < 100 && sh.alive(); i++ {
				if readJSON(filepath.Join(d, exitFile), &ex) == nil {
					st.Status, st.ExitCode, st.FinishedAt = StatusStopped, ex.ExitCode, ex.FinishedAt
					return st, nil
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if readJSON(filepath.Join(d, exitFile), &ex) == nil {
			st.Status, st.ExitCode, st.FinishedAt = StatusStopped, ex.ExitCode, ex.FinishedAt
			return st, nil
		}
		st.Status, st.ExitCode = StatusStopped, 255
	default:
		st.Status = StatusUnknown
	}
	return st, nil
}

// Wait blocks until the container is stopped and returns its exit code.
// It polls the shim's exit record (and runc every second), so it also works
// for containers started by an earlier daemon; ctx bounds it.
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	d, err := r.containerDir(id)
	if err != nil {
		return -1, err
	}
	// The shim records the exit in exit.json, so waiting is reading a file.
	// Poll it with a backoff (50 ms up to 500 ms) and ask runc only when
	// the shim is gone without a record (it crashed): one daemon may wait
	// for hundreds of containers, and a runc exec per container per second
	// melts a small machine.
	delay := 50 * time.Millisecond
	lastCheck := time.Now()
	for {
		var ex exitRecord
		if readJSON(filepath.Join(d, exitFile), &ex) == nil {
			return ex.ExitCode, nil
		}
		if time.Since(lastCheck) >= 2*time.Second {
			lastCheck = time.Now()
			var sh shimRecord
			if readJSON(filepath.Join(d, shimFile), &sh) != nil || !sh.alive() {
				st, err := r.State(ctx, id)
				if err != nil {
					return -1, err
				}
				if st.Status == StatusStopped {
					return st.ExitCode, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return -1, ctx.Err()
		case <-time.After(delay):
		}
		if delay < 500*time.Millisecond {
			delay *= 2
		}
	}
}

// Kill sends sig to the container's init. A stopped container returns
// ErrNotRunning.
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	if _, err := r.containerDir(id); err != nil {
		return err
	}
	if _, err := r.runc(ctx, "kill", id, fmt.Sprint(int(sig))); err != nil {
		if st, serr := r.State(ctx, id); serr == nil && st.Status != StatusRunning {
			return fmt.Errorf("runtime: kill %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("runtime: kill %s: %w", id, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout, then SIGKILL and waits again
// (10s). Stopping a container that is not running is a no-op.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	var sig syscall.Signal
	if c, _, err := r.loadConfig(id); err == nil {
		sig = stopSignal(c.Run.StopSignal)
	}
	return stopGracefully(ctx, r, id, sig, timeout)
}

// Delete removes the container for good: kills it, removes runc's state,
// waits for (or kills) its shim, unmounts the rootfs and removes its
// directory. Deleting a missing container is success.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	d := r.dir(id)
	if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
		return r.runcDelete(ctx, id)
	}
	r.runc(ctx, "kill", id, "KILL") // best effort; the shim records the exit
	r.stopShim(ctx, d, 10*time.Second)
	if err := r.runcDelete(ctx, id); err != nil {
		return err
	}
	if err := unmountAll(filepath.Join(d, bundleDir, "rootfs")); err != nil {
		return err
	}
	if err := os.RemoveAll(d); err != nil {
		return fmt.Errorf("runtime: delete %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.locks, id)
	r.mu.Unlock()
	r.log.Debug("container deleted", "id", id)
	return nil
}

// List returns the IDs of all containers in ContainersDir (created and not
// deleted, running or not), sorted. Use State for each one's status.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(r.opts.ContainersDir)
	if err != nil {
		return nil, fmt.Errorf("runtime: list: %w", err)
	}
	var ids []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(r.opts.ContainersDir, e.Name(), configFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Exec runs args in the running container (same user, cwd and environment
// as its init, plus env), streams its output to stdout and stderr (nil
// discards), and returns its exit code. Cancelling ctx sends it SIGTERM
// (through runc), then gives up waiting after 5s.
func (r *Runtime) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	if len(args) == 0 {
		return -1, fmt.Errorf("runtime: exec %s: no command: %w", id, ErrInvalid)
	}
	d, err := r.containerDir(id)
	if err != nil {
		return -1, err
	}
	if st, err := r.State(ctx, id); err != nil {
		return -1, err
	} else if st.Status != StatusRunning {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, ErrNotRunning)
	}
	var spec specs.Spec
	if err := readJSON(filepath.Join(d, bundleDir, "config.json"), &spec); err != nil || spec.Process == nil {
		return -1, fmt.Errorf("runtime: exec %s: read bundle: %v", id, err)
	}
	proc := *spec.Process
	proc.Args = args
	proc.Env = mergeEnv(proc.Env, env, spec.Hostname)
	pf, err := os.CreateTemp(d, "exec-*.json")
	if err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	defer os.Remove(pf.Name())
	pf.Close()
	if err := writeJSON(pf.Name(), proc); err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	cmd := exec.CommandContext(ctx, r.runcPath, "--root", r.opts.RuncRoot, "exec", "--process", pf.Name(), id)
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(unix.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	return 0, nil
}
