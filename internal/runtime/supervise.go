package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"
)

// SupervisorOptions place a containerd that the daemon runs itself.
type SupervisorOptions struct {
	// Binary is the containerd binary; "" looks up "containerd" in PATH
	// (then /usr/local/bin).
	Binary string
	// Root holds containerd's persistent state (content, snapshots,
	// metadata), under the daemon's data root.
	Root string
	// State holds its runtime state, socket and pid file, under the
	// daemon's exec root.
	State  string
	Logger *slog.Logger
}

// Supervisor runs containerd for the daemon, restarting it if it dies, as
// dockerd does when no --containerd is given. Tasks (their shims) outlive
// containerd and the daemon; a new containerd on the same directories finds
// them again.
type Supervisor struct {
	opts SupervisorOptions
	log  *slog.Logger
	bin  string

	mu      sync.Mutex
	pid     int
	closing bool
	exited  chan struct{} // closed when the current process is gone
	stopped chan struct{} // closed when the supervising loop ends
}

// Address is the gRPC socket of the supervised containerd.
func (s *Supervisor) Address() string { return filepath.Join(s.opts.State, "containerd.sock") }

func (s *Supervisor) pidFile() string { return filepath.Join(s.opts.State, "containerd.pid") }

// containerdConfig is containerd's configuration (version 3, containerd 2.x):
// everything in the daemon's roots, the Kubernetes (CRI) and NRI plugins
// off.
const containerdConfig = `version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.nri.v1.nri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`

// Supervise starts containerd (or adopts the one a killed daemon left
// running on the same state directory) and waits until it serves.
func Supervise(ctx context.Context, opts SupervisorOptions) (*Supervisor, error) {
	s := &Supervisor{opts: opts, log: opts.Logger, stopped: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.bin = opts.Binary
	if s.bin == "" {
		p, err := exec.LookPath("containerd")
		if err != nil {
			p = "/usr/local/bin/containerd"
			if _, serr := os.Stat(p); serr != nil {
				return nil, fmt.Errorf("containerd: not found in PATH nor /usr/local/bin (install it with scripts/setup.sh, or give --containerd SOCKET)")
			}
		}
		s.bin = p
	}
	for _, d := range []string{opts.Root, opts.State} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("containerd: %w", err)
		}
	}
	if len(s.Address()) >= 108 {
		return nil, fmt.Errorf("containerd: socket path %s is too long for a unix socket (use a shorter --exec-root)", s.Address())
	}
	cfg := fmt.Sprintf(containerdConfig, opts.Root, opts.State, s.Address(), s.Address()+".ttrpc", filepath.Join(opts.Root, "opt"))
	if err := os.WriteFile(filepath.Join(opts.State, "config.toml"), []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("containerd: %w", err)
	}
	if pid := s.leftover(); pid > 0 && serving(ctx, s.Address(), 2*time.Second) == nil {
		s.log.Info("adopting the containerd left running", "pid", pid)
		s.pid, s.exited = pid, make(chan struct{})
		go s.watchAdopted(pid, s.exited)
	} else {
		if pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		if err := s.start(); err != nil {
			return nil, err
		}
	}
	go s.loop()
	if err := serving(ctx, s.Address(), 30*time.Second); err != nil {
		s.Close()
		return nil, fmt.Errorf("containerd did not come up: %w (its log: %s)", err, filepath.Join(opts.State, "containerd.log"))
	}
	return s, nil
}

// leftover returns the pid of a containerd still running on our state
// directory (from the pid file), or 0.
func (s *Supervisor) leftover() int {
	b, err := os.ReadFile(s.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), s.opts.State) {
		return 0
	}
	return pid
}

func (s *Supervisor) start() error {
	logf, err := os.OpenFile(filepath.Join(s.opts.State, "containerd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	defer logf.Close()
	os.Remove(s.Address())
	cmd := exec.Command(s.bin, "--config", filepath.Join(s.opts.State, "config.toml"), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a ^C to the daemon's terminal is not for it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("containerd: start: %w", err)
	}
	os.WriteFile(s.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o600)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.pid, s.exited = cmd.Process.Pid, exited
	s.mu.Unlock()
	s.log.Info("containerd started", "pid", cmd.Process.Pid, "address", s.Address())
	return nil
}

// watchAdopted closes exited when the adopted process (not our child) is gone.
func (s *Supervisor) watchAdopted(pid int, exited chan struct{}) {
	for unix.Kill(pid, 0) == nil {
		time.Sleep(500 * time.Millisecond)
	}
	close(exited)
}

// loop restarts containerd when it dies, with a back-off (1 s doubling to
// 30 s, reset after a minute up), until Close.
func (s *Supervisor) loop() {
	defer close(s.stopped)
	backoff := time.Second
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		started := time.Now()
		<-exited
		s.mu.Lock()
		closing := s.closing
		s.mu.Unlock()
		if closing {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		s.log.Warn("containerd exited; restarting", "in", backoff)
		time.Sleep(backoff)
		backoff = min(2*backoff, 30*time.Second)
		s.mu.Lock()
		closing = s.closing
		s.mu.Unlock()
		if closing {
			return
		}
		if err := s.start(); err != nil {
			s.log.Error("restart containerd", "err", err)
		}
	}
}

// Close stops containerd (SIGTERM, SIGKILL after 10 s). Running tasks and
// their shims are left alone.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closing = true
	pid, exited := s.pid, s.exited
	s.mu.Unlock()
	if pid <= 0 {
		return nil
	}
	unix.Kill(pid, unix.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		unix.Kill(pid, unix.SIGKILL)
		<-exited
	}
	<-s.stopped
	os.Remove(s.pidFile())
	return nil
}

// serving waits up to d for containerd at address to answer.
func serving(ctx context.Context, address string, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		if _, err := os.Stat(address); err == nil {
			cl, err := containerd.New(address, containerd.WithTimeout(time.Second))
			if err == nil {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				ok, serr := cl.IsServing(cctx)
				cancel()
				cl.Close()
				if ok {
					return nil
				}
				err = serr
			}
			last = err
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if last == nil {
		last = errors.New("timed out")
	}
	return last
}
