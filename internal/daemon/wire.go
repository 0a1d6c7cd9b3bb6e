package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/driver/host"
	"github.com/vxnet/vxnet/internal/driver/macvlan"
	"github.com/vxnet/vxnet/internal/driver/null"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/runtime"
	"github.com/vxnet/vxnet/internal/runtime/image"
	"github.com/vxnet/vxnet/internal/store"
	"github.com/vxnet/vxnet/internal/volume"
)

// RuncRootDir is where, under the exec root, runc keeps its state.
const RuncRootDir = "runc"

type wired struct {
	engine *engine.Engine
	// afterStart runs once the engine has started.
	afterStart []func(*engine.Engine)

	mu      sync.Mutex
	closers []func()
}

func (w *wired) close() {
	w.mu.Lock()
	cs := w.closers
	w.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// wire builds the engine and everything it stands on. Drivers are listed
// here, explicitly, not registered by init side effects.
func wire(ctx context.Context, cfg Config, bip netip.Prefix, st *store.Store, log *slog.Logger) (*wired, error) {
	w := &wired{}
	images, err := image.Open(filepath.Join(cfg.DataRoot, "images"))
	if err != nil {
		return nil, err
	}
	if _, err := images.Get("busybox"); err != nil {
		if bb := findBusybox(); bb != "" {
			if _, err := images.EnsureBusybox(ctx, bb); err != nil {
				log.Warn("build busybox image", "err", err)
			} else {
				log.Info("built busybox image from the host's busybox-static", "path", bb)
			}
		}
	}
	vols, err := volume.Open(filepath.Join(cfg.DataRoot, "volumes"))
	if err != nil {
		return nil, err
	}
	rt, err := wireRuntime(ctx, cfg, images, w, log)
	if err != nil {
		w.close()
		return nil, err
	}
	fw, err := firewall.New(firewall.Options{Table: cfg.FirewallTable, Logger: log.With("component", "firewall"),
		EnableBridgeNetfilter: true})
	if err != nil {
		return nil, err
	}
	mv := macvlan.New(macvlan.Options{Logger: log.With("component", "macvlan")})
	drivers := []driver.Driver{
		bridge.New(bridge.Options{Logger: log.With("component", "bridge")}),
		host.New(),
		null.New(),
		mv,
		macvlan.NewIPVlan(mv),
	}
	var ups []netip.AddrPort
	for _, v := range cfg.DNS {
		up, err := dns.ParseUpstream(v)
		if err != nil {
			return nil, fmt.Errorf("invalid --dns: %w", err)
		}
		ups = append(ups, up)
	}
	resolver := dns.New(dns.Options{Upstreams: ups, Logger: log.With("component", "dns")})
	w.closers = append(w.closers, resolver.Close)
	alloc := ipam.NewAllocator()
	alloc.SetDefaultPools(cfg.pools)
	eopts := engine.Options{
		DataRoot: cfg.DataRoot, ExecRoot: cfg.ExecRoot, BridgeIP: bip, Store: st,
		IPAM: engine.LocalIPAM(alloc), Runtime: runtimeAdapter{rt}, Images: newImagesAdapter(images, rt), Volumes: vols,
		Firewall: fw, HostRoutes: ipam.HostRoutes, Logger: log, DNS: resolver,
		ControlPorts: append([]int(nil), cfg.apiPorts...),
	}
	if err := wireCluster(ctx, cfg, &eopts, &drivers, w, log); err != nil {
		w.close()
		return nil, err
	}
	eopts.Drivers = drivers
	eng, err := engine.New(eopts)
	if err != nil {
		w.close()
		return nil, err
	}
	w.engine = eng
	return w, nil
}

func findBusybox() string {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// wireRuntime returns the container runtime: containerd (the one at
// --containerd, or one the daemon runs itself), or with --runtime runc
// vxnet's own runc shim.
func wireRuntime(ctx context.Context, cfg Config, images *image.Store, w *wired, log *slog.Logger) (runtimeBackend, error) {
	runcContainers := filepath.Join(cfg.DataRoot, "containers")
	switch cfg.Runtime {
	case "runc":
		if cfg.Containerd != "" {
			return nil, fmt.Errorf("--containerd is for --runtime containerd, not runc")
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return runtime.New(runtime.Options{
			RuncRoot:      filepath.Join(cfg.ExecRoot, "containerd-runc"),
			ContainersDir: runcContainers,
			ShimCommand:   []string{self, "shim"},
			Images:        images,
			Logger:        log.With("component", "runtime"),
		})
	case "containerd":
	default:
		return nil, fmt.Errorf("invalid --runtime %q: use containerd or runc", cfg.Runtime)
	}
	if ents, _ := os.ReadDir(runcContainers); len(ents) > 0 {
		return nil, fmt.Errorf("data root %s holds %d containers of the runc runtime (vxnet before containerd): "+
			"start the daemon with --runtime runc to keep using them, or remove them (vxnet rm -f, with the daemon "+
			"started with --runtime runc) and start it again without", cfg.DataRoot, len(ents))
	}
	addr := cfg.Containerd
	if addr == "" {
		sup, err := runtime.Supervise(ctx, runtime.SupervisorOptions{
			Root:   filepath.Join(cfg.DataRoot, "containerd"),
			State:  filepath.Join(cfg.ExecRoot, "containerd"),
			Logger: log.With("component", "containerd"),
		})
		if err != nil {
			return nil, err
		}
		w.closers = append(w.closers, func() { sup.Close() })
		addr = sup.Address()
	}
	hostNetns := filepath.Join(cfg.ExecRoot, "hostnet")
	if err := runtime.PinNetns(hostNetns); err != nil {
		return nil, err
	}
	rt, err := runtime.NewContainerd(ctx, runtime.ContainerdOptions{
		HostNetns:     hostNetns,
		Address:       addr,
		Namespace:     cfg.ContainerdNamespace,
		ContainersDir: filepath.Join(cfg.DataRoot, "logs"),
		FIFODir:       filepath.Join(cfg.ExecRoot, "fifo"),
		RuncRoot:      filepath.Join(cfg.ExecRoot, "containerd-runc"),
		Images:        images,
		Logger:        log.With("component", "runtime"),

		InsecureRegistries: cfg.InsecureRegistries,
	})
	if err != nil {
		return nil, err
	}
	w.closers = append(w.closers, func() { rt.Close() })
	log.Info("containers run by containerd", "address", addr, "namespace", cfg.ContainerdNamespace)
	return rt, nil
}

// runtimeBackend is what both runtimes (containerd and runc) offer.
type runtimeBackend interface {
	Create(ctx context.Context, s runtime.Spec) error
	Start(ctx context.Context, id string) (int, error)
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Delete(ctx context.Context, id string) error
	State(ctx context.Context, id string) (runtime.State, error)
	Wait(ctx context.Context, id string) (int, error)
	Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error)
	Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error
	List(ctx context.Context) ([]string, error)
	Kill(ctx context.Context, id string, sig syscall.Signal) error
	LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o runtime.LogOptions) error
}

// runtimeAdapter presents a runtime as the engine's Runtime.
type runtimeAdapter struct{ r runtimeBackend }

// Components reports containerd, runc and docker-init for /version.
func (a runtimeAdapter) Components(ctx context.Context) []api.Component {
	v, ok := a.r.(interface {
		Versions(ctx context.Context) []runtime.Component
	})
	if !ok {
		return nil
	}
	var out []api.Component
	for _, c := range v.Versions(ctx) {
		out = append(out, api.Component{Name: c.Name, Version: c.Version, Details: c.Details})
	}
	return out
}

func (a runtimeAdapter) Create(ctx context.Context, s engine.ContainerSpec) error {
	spec := runtime.Spec{ID: s.ID, Image: s.Image, Args: s.Args, Env: s.Env, Hostname: s.Hostname, NetnsPath: s.NetnsPath,
		Terminal: s.Tty, Stdin: s.Stdin, ConsoleSize: s.ConsoleSize, Run: s.Run}
	if _, err := a.streams(); err != nil && (s.Tty || s.Stdin) {
		return err
	}
	for _, m := range s.Mounts {
		spec.Mounts = append(spec.Mounts, runtime.Mount{Source: m.Source, Destination: m.Destination, ReadOnly: m.ReadOnly, Propagation: m.Propagation})
	}
	err := a.r.Create(ctx, spec)
	if oe := (*runtime.OptionError)(nil); errors.As(err, &oe) {
		return optionError{oe.Msg}
	}
	return err
}

// optionError is a run option the runtime refused: model.ErrInvalid with
// the runtime's message as it is.
type optionError struct{ msg string }

func (e optionError) Error() string        { return e.msg }
func (e optionError) Is(target error) bool { return target == model.ErrInvalid }

func (a runtimeAdapter) Start(ctx context.Context, id string) (int, error) { return a.r.Start(ctx, id) }
func (a runtimeAdapter) Stop(ctx context.Context, id string, t time.Duration) error {
	return a.r.Stop(ctx, id, t)
}
func (a runtimeAdapter) Delete(ctx context.Context, id string) error { return a.r.Delete(ctx, id) }
func (a runtimeAdapter) State(ctx context.Context, id string) (engine.RuntimeState, error) {
	s, err := a.r.State(ctx, id)
	if errors.Is(err, runtime.ErrNotFound) {
		// The engine tells a container that is gone from a runtime
		// that does not answer.
		return engine.RuntimeState{}, fmt.Errorf("%w (%w)", err, model.ErrNotFound)
	}
	if err != nil {
		return engine.RuntimeState{}, err
	}
	return engine.RuntimeState{Status: s.Status, Pid: s.Pid, ExitCode: s.ExitCode, FinishedAt: s.FinishedAt, Paused: s.Paused}, nil
}
func (a runtimeAdapter) Wait(ctx context.Context, id string) (int, error) { return a.r.Wait(ctx, id) }
func (a runtimeAdapter) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	return a.r.Exec(ctx, id, args, env, stdout, stderr)
}
func (a runtimeAdapter) Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error {
	return a.r.Logs(ctx, id, stdout, stderr, follow)
}
func (a runtimeAdapter) List(ctx context.Context) ([]string, error) { return a.r.List(ctx) }

// imagesAdapter presents the image store as the engine's Images (and,
// with the containerd runtime, its ImageManager).
type imagesAdapter struct {
	s  *image.Store
	rt imageRuntime // nil with the runc runtime
}

func info(i image.Image) engine.ImageInfo {
	name := i.ID
	if len(i.RepoTags) > 0 {
		name = i.RepoTags[0]
	}
	return engine.ImageInfo{ID: i.ID, Name: name, Created: i.Created, Size: i.Size, Cmd: i.Config.Cmd,
		Entrypoint: i.Config.Entrypoint, User: i.Config.User, WorkingDir: i.Config.WorkingDir,
		Labels: i.Config.Labels, StopSignal: i.Config.StopSignal,
		ExposedPorts: exposedPorts(i.Config.ExposedPorts), Volumes: sortedKeys(i.Config.Volumes)}
}

func sortedKeys(m map[string]struct{}) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// exposedPorts decodes an image's exposed ports ("80/tcp", "53/udp", "8080"
// meaning tcp); entries that are not ports are skipped.
func exposedPorts(m map[string]struct{}) []model.Port {
	var out []model.Port
	for k := range m {
		num, proto, _ := strings.Cut(k, "/")
		if proto == "" {
			proto = "tcp"
		}
		n, err := strconv.ParseUint(num, 10, 16)
		if err != nil || n == 0 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			continue
		}
		out = append(out, model.Port{Num: uint16(n), Proto: proto})
	}
	return out
}

func (a imagesAdapter) Get(ref string) (engine.ImageInfo, error) {
	i, err := a.s.Get(ref)
	if err != nil {
		return engine.ImageInfo{}, imageErr(err)
	}
	return info(i), nil
}

func (a imagesAdapter) List() ([]engine.ImageInfo, error) {
	imgs, err := a.s.List()
	if err != nil {
		return nil, err
	}
	var out []engine.ImageInfo
	for _, i := range imgs {
		for _, tag := range i.RepoTags {
			x := info(i)
			x.Name = tag
			out = append(out, x)
		}
		if len(i.RepoTags) == 0 {
			out = append(out, info(i))
		}
	}
	return out, nil
}

func (a imagesAdapter) Import(name string, r io.Reader) (engine.ImageInfo, error) {
	i, err := a.s.Import(context.Background(), name, r, image.Config{})
	if err != nil {
		return engine.ImageInfo{}, imageErr(err)
	}
	x := info(i)
	return x, nil
}

// streamBackend is the streams part of the containerd runtime.
type streamBackend interface {
	Attach(ctx context.Context, id string, o runtime.AttachOptions) error
	ExecWith(ctx context.Context, id string, o runtime.ExecOptions) (int, error)
	Resize(ctx context.Context, id, execID string, height, width uint32) error
}

// RootFS gives docker cp the container's files (containerd runtime only).
func (a runtimeAdapter) RootFS(ctx context.Context, id string) (string, bool, func(), error) {
	fr, ok := a.r.(interface {
		RootFS(ctx context.Context, id string) (string, bool, func(), error)
	})
	if !ok {
		return "", false, nil, classed{errors.New("docker cp needs the containerd runtime (this daemon runs --runtime runc)"), model.ErrInvalid}
	}
	return fr.RootFS(ctx, id)
}

func (a runtimeAdapter) streams() (streamBackend, error) {
	sb, ok := a.r.(streamBackend)
	if !ok {
		return nil, fmt.Errorf("attach, stdin and TTYs need the containerd runtime (the daemon runs with --runtime runc): %w", model.ErrInvalid)
	}
	return sb, nil
}

func (a runtimeAdapter) Attach(ctx context.Context, id string, s api.AttachStreams) error {
	sb, err := a.streams()
	if err != nil {
		return err
	}
	return sb.Attach(ctx, id, runtime.AttachOptions{Stdin: s.Stdin, CloseStdin: s.CloseStdin, Stdout: s.Stdout, Stderr: s.Stderr})
}

func (a runtimeAdapter) ExecStream(ctx context.Context, id string, req api.ExecStreamRequest) (int, error) {
	sb, err := a.streams()
	if err != nil {
		return -1, err
	}
	return sb.ExecWith(ctx, id, runtime.ExecOptions{ID: req.ID, Args: req.Cmd, Env: req.Env, Tty: req.Tty,
		ConsoleSize: req.ConsoleSize, Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr,
		User: req.User, WorkingDir: req.WorkingDir, Privileged: req.Privileged})
}

func (a runtimeAdapter) Resize(ctx context.Context, id, execID string, height, width uint32) error {
	sb, err := a.streams()
	if err != nil {
		return err
	}
	return sb.Resize(ctx, id, execID, height, width)
}

func (a runtimeAdapter) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	err := a.r.Kill(ctx, id, sig)
	if errors.Is(err, runtime.ErrNotRunning) {
		return fmt.Errorf("%w: %w", model.ErrConflict, err)
	}
	return err
}

func (a runtimeAdapter) LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o api.LogOptions) error {
	return a.r.LogsWith(ctx, id, stdout, stderr, runtime.LogOptions{Follow: o.Follow, Tail: o.Tail, Since: o.Since,
		Until: o.Until, Timestamps: o.Timestamps})
}

// controlBackend is the pause, pids and stats part of the containerd
// runtime.
type controlBackend interface {
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Pids(ctx context.Context, id string) ([]int, error)
	Metrics(ctx context.Context, id string) (container.StatsResponse, error)
}

func (a runtimeAdapter) control() (controlBackend, error) {
	cb, ok := a.r.(controlBackend)
	if !ok {
		return nil, fmt.Errorf("pause, unpause, top and stats need the containerd runtime (the daemon runs with --runtime runc): %w", model.ErrInvalid)
	}
	return cb, nil
}

// notRunning turns the runtime's ErrNotRunning into a conflict.
func notRunning(err error) error {
	if errors.Is(err, runtime.ErrNotRunning) {
		return fmt.Errorf("%w: %w", model.ErrConflict, err)
	}
	return err
}

func (a runtimeAdapter) Pause(ctx context.Context, id string) error {
	cb, err := a.control()
	if err != nil {
		return err
	}
	return notRunning(cb.Pause(ctx, id))
}

func (a runtimeAdapter) Resume(ctx context.Context, id string) error {
	cb, err := a.control()
	if err != nil {
		return err
	}
	return notRunning(cb.Resume(ctx, id))
}

func (a runtimeAdapter) Pids(ctx context.Context, id string) ([]int, error) {
	cb, err := a.control()
	if err != nil {
		return nil, err
	}
	pids, err := cb.Pids(ctx, id)
	return pids, notRunning(err)
}

func (a runtimeAdapter) Metrics(ctx context.Context, id string) (container.StatsResponse, error) {
	cb, err := a.control()
	if err != nil {
		return container.StatsResponse{}, err
	}
	s, err := cb.Metrics(ctx, id)
	return s, notRunning(err)
}
