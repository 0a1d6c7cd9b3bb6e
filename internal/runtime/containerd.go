package runtime

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"sync"
	"syscall"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/pkg/archive"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispecs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxnet/vxnet/internal/runtime/image"
)

// Snapshotter is the containerd snapshotter containers' root filesystems
// are made with.
const Snapshotter = "overlayfs"

// runcShim is the containerd runtime (shim) that runs the tasks.
const runcShim = "io.containerd.runc.v2"

// labelImageID marks containerd images imported from vxnet's image store
// with the vxnet image ID they were made from.
const labelImageID = "vxnet.image.id"

// ContainerdOptions configure a Containerd runtime.
type ContainerdOptions struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace of this daemon: its containers,
	// tasks, images, snapshots and leases live there and nowhere else.
	Namespace string
	// ContainersDir holds one directory per container (its log).
	ContainersDir string
	// FIFODir holds the stdio FIFOs of the tasks (under the exec root).
	FIFODir string
	// HostNetns is a pinned handle of the daemon's own network namespace,
	// joined by containers on the host network (containerd and its shims
	// may live in another namespace than the daemon). "" leaves them in
	// the shim's namespace.
	HostNetns string
	// RuncRoot is runc's state directory for the shim (runc --root
	// <RuncRoot>/<Namespace>); "" leaves containerd's default.
	RuncRoot string
	// Images is vxnet's image store; images are imported from it into
	// containerd's content store on first use.
	Images *image.Store
	// InsecureRegistries may be spoken to over plain HTTP: host[:port] or
	// CIDR (--insecure-registry).
	InsecureRegistries []string
	// CgroupParent; "" means "vxnet-<12 hex of sha256(Namespace)>".
	CgroupParent string
	Logger       *slog.Logger
}

// Containerd runs containers as containerd tasks (runc v2 shim), with root
// filesystems from containerd's overlayfs snapshotter. The network
// namespace is the one vxnet made (Spec.NetnsPath), joined by path.
//
// Output: each task's stdout and stderr are FIFOs that the daemon copies
// into the container's log (the json-file format of Logs); a restarted
// daemon reopens the FIFOs of the tasks still running.
type Containerd struct {
	opts     ContainerdOptions
	log      *slog.Logger
	client   *containerd.Client
	cgParent string

	mu      sync.Mutex
	locks   map[string]*sync.Mutex
	copiers map[string]*taskIO // by container ID, while the daemon copies its output
	hubs    map[string]*hub    // by container ID: attached clients and stdin
}

// taskIO is the daemon's end of one task's stdio.
type taskIO struct {
	log  *logWriter
	done chan struct{} // closed when the output is drained into the log
	pid  uint32        // the task's init (tells the tasks of a container apart)
}

// NewContainerd connects to containerd and reattaches to the output of the
// tasks still running in the namespace.
func NewContainerd(ctx context.Context, opts ContainerdOptions) (*Containerd, error) {
	if opts.Address == "" || opts.Namespace == "" || opts.ContainersDir == "" || opts.FIFODir == "" {
		return nil, fmt.Errorf("runtime: containerd: Address, Namespace, ContainersDir and FIFODir are required: %w", ErrInvalid)
	}
	for _, d := range []string{opts.ContainersDir, opts.FIFODir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("runtime: containerd: %w", err)
		}
	}
	cl, err := containerd.New(opts.Address, containerd.WithDefaultNamespace(opts.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("runtime: connect to containerd at %s: %w", opts.Address, err)
	}
	r := &Containerd{opts: opts, log: opts.Logger, client: cl, locks: map[string]*sync.Mutex{}, copiers: map[string]*taskIO{}, hubs: map[string]*hub{}}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.cgParent = opts.CgroupParent
	if r.cgParent == "" {
		r.cgParent = "vxnet-" + shortHash(opts.Namespace)
	}
	if err := r.reattach(r.ctx(ctx)); err != nil {
		cl.Close()
		return nil, err
	}
	return r, nil
}

// Close closes the connection to containerd; tasks keep running.
func (r *Containerd) Close() error { return r.client.Close() }

// Client is the containerd client (for tests and the leak check).
func (r *Containerd) Client() *containerd.Client { return r.client }

func (r *Containerd) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.opts.Namespace)
}

func (r *Containerd) lock(id string) func() {
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

func (r *Containerd) dir(id string) string { return filepath.Join(r.opts.ContainersDir, id) }

// notFound turns containerd's not-found into ErrNotFound.
func notFound(id string, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: container %s: %w", id, ErrNotFound)
	}
	return fmt.Errorf("runtime: container %s: %w", id, err)
}

// Create makes the containerd container: its snapshot from the image and
// its OCI spec. Creating an existing container is a no-op.
func (r *Containerd) Create(ctx context.Context, s Spec) error {
	if err := checkID(s.ID); err != nil {
		return err
	}
	defer r.lock(s.ID)()
	ctx = r.ctx(ctx)
	if _, err := r.client.LoadContainer(ctx, s.ID); err == nil {
		return nil
	}
	if r.opts.Images == nil {
		return fmt.Errorf("runtime: create %s: no image store to resolve %q: %w", s.ID, s.Image, ErrInvalid)
	}
	vimg, err := r.opts.Images.Get(s.Image)
	if err != nil {
		return err
	}
	c := containerConfig{ID: s.ID, ImageID: vimg.ID, Hostname: s.Hostname, NetnsPath: s.NetnsPath, Mounts: s.Mounts, Created: time.Now().UTC(), Run: s.Run}
	hostNet := c.NetnsPath == ""
	if c.NetnsPath == "" {
		c.NetnsPath = r.opts.HostNetns
	}
	if err := completeConfig(&c, s, vimg); err != nil {
		return err
	}
	img, err := r.ensureImage(ctx, vimg)
	if err != nil {
		return fmt.Errorf("runtime: create %s: %w", s.ID, err)
	}
	if err := os.MkdirAll(r.dir(s.ID), 0o700); err != nil {
		return fmt.Errorf("runtime: create %s: %w", s.ID, err)
	}
	spec := ociSpec(c, r.cgParent+"/"+c.ID)
	spec.Process.Terminal = s.Terminal
	if s.Terminal && s.ConsoleSize[0] > 0 && s.ConsoleSize[1] > 0 {
		spec.Process.ConsoleSize = &specs.Box{Height: s.ConsoleSize[0], Width: s.ConsoleSize[1]}
	}
	_, err = r.client.NewContainer(ctx, s.ID,
		containerd.WithContainerLabels(map[string]string{labelStdin: fmt.Sprint(s.Stdin), labelStopSignal: s.Run.StopSignal}),
		containerd.WithImage(img),
		containerd.WithSnapshotter(Snapshotter),
		containerd.WithNewSnapshot(s.ID, img),
		containerd.WithRuntime(runcShim, &runcoptions.Options{Root: r.opts.RuncRoot}),
		// Applied once the snapshot exists: the user is looked up in it.
		containerd.WithSpec(spec, func(ctx context.Context, cl oci.Client, ctr *containers.Container, s *oci.Spec) error {
			return applyRunConfig(s, c.Run, hostNet, func(f func(string) error) error {
				mounts, err := cl.SnapshotService(ctr.Snapshotter).Mounts(ctx, ctr.SnapshotKey)
				if err != nil {
					return err
				}
				return mount.WithReadonlyTempMount(ctx, mounts, f)
			})
		}),
	)
	if err != nil {
		os.RemoveAll(r.dir(s.ID))
		// A failed create may leave the snapshot behind.
		r.client.SnapshotService(Snapshotter).Remove(ctx, s.ID)
		return fmt.Errorf("runtime: create %s: %w", s.ID, err)
	}
	r.log.Debug("container created", "id", s.ID)
	return nil
}

// ensureImage returns the containerd image made from vxnet image vimg,
// importing it (one uncompressed layer of its rootfs) and unpacking it into
// the snapshotter when containerd does not have it yet.
func (r *Containerd) ensureImage(ctx context.Context, vimg image.Image) (containerd.Image, error) {
	if vimg.Target != nil {
		// Pulled or loaded: containerd has the content under the ID.
		img, err := r.client.GetImage(ctx, vimg.ID)
		if err != nil {
			return nil, fmt.Errorf("image %s: its content is not in containerd (pull or load it again): %w", vimg.ID, err)
		}
		if ok, _ := img.IsUnpacked(ctx, Snapshotter); ok {
			return img, nil
		}
		return img, img.Unpack(ctx, Snapshotter)
	}
	name := vimg.ID
	if len(vimg.RepoTags) > 0 {
		name = vimg.RepoTags[0]
	}
	if img, err := r.client.GetImage(ctx, name); err == nil && img.Labels()[labelImageID] == vimg.ID {
		if ok, _ := img.IsUnpacked(ctx, Snapshotter); ok {
			return img, nil
		}
		return img, img.Unpack(ctx, Snapshotter)
	}
	// A lease keeps the blobs from the garbage collector until the image
	// record references them.
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	cs := r.client.ContentStore()

	var layer bytes.Buffer
	if err := archive.WriteDiff(ctx, &layer, "", vimg.Rootfs); err != nil {
		return nil, fmt.Errorf("import image %s: layer: %w", name, err)
	}
	layerDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer.Bytes()), Size: int64(layer.Len())}
	if err := content.WriteBlob(ctx, cs, layerDesc.Digest.String(), bytes.NewReader(layer.Bytes()), layerDesc); err != nil {
		return nil, fmt.Errorf("import image %s: layer: %w", name, err)
	}
	created := vimg.Created
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: goruntime.GOARCH},
		Config:   ocispec.ImageConfig{Env: vimg.Config.Env, Cmd: vimg.Config.Cmd},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	}
	cfgDesc, err := writeJSONBlob(ctx, cs, ocispec.MediaTypeImageConfig, cfg, nil)
	if err != nil {
		return nil, fmt.Errorf("import image %s: config: %w", name, err)
	}
	manifest := ocispec.Manifest{
		Versioned: ocispecs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cfgDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	}
	mDesc, err := writeJSONBlob(ctx, cs, ocispec.MediaTypeImageManifest, manifest, map[string]string{
		"containerd.io/gc.ref.content.config": cfgDesc.Digest.String(),
		"containerd.io/gc.ref.content.l.0":    layerDesc.Digest.String(),
	})
	if err != nil {
		return nil, fmt.Errorf("import image %s: manifest: %w", name, err)
	}
	rec := images.Image{Name: name, Target: mDesc, Labels: map[string]string{labelImageID: vimg.ID}}
	is := r.client.ImageService()
	if _, err := is.Create(ctx, rec); errdefs.IsAlreadyExists(err) {
		_, err = is.Update(ctx, rec, "target", "labels")
		if err != nil {
			return nil, fmt.Errorf("import image %s: %w", name, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("import image %s: %w", name, err)
	}
	img := containerd.NewImage(r.client, rec)
	if err := img.Unpack(ctx, Snapshotter); err != nil {
		return nil, fmt.Errorf("unpack image %s: %w", name, err)
	}
	r.log.Info("image imported into containerd", "image", name, "id", vimg.ID)
	return img, nil
}

func writeJSONBlob(ctx context.Context, cs content.Store, mediaType string, v any, labels map[string]string) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	var opts []content.Opt
	if labels != nil {
		opts = append(opts, content.WithLabels(labels))
	}
	return desc, content.WriteBlob(ctx, cs, desc.Digest.String(), bytes.NewReader(b), desc, opts...)
}

// Start starts the container's task (after removing the stopped task of an
// earlier run) and returns its host pid. Starting a running container
// returns its pid.
func (r *Containerd) Start(ctx context.Context, id string) (int, error) {
	if err := checkID(id); err != nil {
		return 0, err
	}
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return 0, notFound(id, err)
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		st, err := t.Status(ctx)
		if err == nil && (st.Status == containerd.Running || st.Status == containerd.Paused) {
			return int(t.Pid()), nil
		}
		r.waitCopier(id)
		if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return 0, fmt.Errorf("runtime: start %s: delete old task: %w", id, err)
		}
	}
	tio, err := r.newTaskIO(id)
	if err != nil {
		return 0, fmt.Errorf("runtime: start %s: %w", id, err)
	}
	streams, err := r.streams(ctx, ctr)
	if err != nil {
		tio.log.f.Close()
		return 0, fmt.Errorf("runtime: start %s: %w", id, err)
	}
	task, err := ctr.NewTask(ctx, cio.NewCreator(append(streams.opts, cio.WithFIFODir(r.opts.FIFODir))...))
	if err != nil {
		tio.log.f.Close()
		streams.hub.runEnded() // release clients attached for this run
		return 0, fmt.Errorf("runtime: start %s: %w", id, startError(err))
	}
	r.copy(id, tio, task, streams)
	if err := task.Start(ctx); err != nil {
		task.Delete(context.WithoutCancel(ctx), containerd.WithProcessKill)
		return 0, fmt.Errorf("runtime: start %s: %w", id, startError(err))
	}
	r.log.Info("container started", "id", id, "pid", task.Pid())
	return int(task.Pid()), nil
}

// startError is containerd's error with runc's message in it ("failed to
// create shim task: OCI runtime create failed: ...").
func startError(err error) error { return err }

func (r *Containerd) newTaskIO(id string) (*taskIO, error) {
	if err := os.MkdirAll(r.dir(id), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(r.dir(id), logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &taskIO{log: &logWriter{f: f}, done: make(chan struct{})}, nil
}

// taskStreams are the daemon's ends of a task's stdio: the output goes
// through the container's hub (attached clients) into pipes read by the
// log copier.
type taskStreams struct {
	opts       []cio.Opt
	outR, errR *io.PipeReader
	outW, errW *hubWriter
	hub        *hub
}

// streams prepares the stdio of a task of ctr: stdin from the hub when the
// container was created with one, a TTY when its spec asks for one.
func (r *Containerd) streams(ctx context.Context, ctr containerd.Container) (*taskStreams, error) {
	// The record ctr was loaded with (LoadContainer, Containers) has the
	// labels and the spec: no more round trips to containerd, and of the
	// spec only the TTY flag is decoded.
	info, err := ctr.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return nil, err
	}
	labels := info.Labels
	var spec struct {
		Process *struct {
			Terminal bool `json:"terminal"`
		} `json:"process"`
	}
	if info.Spec != nil {
		if err := json.Unmarshal(info.Spec.GetValue(), &spec); err != nil {
			return nil, fmt.Errorf("container %s: spec: %w", ctr.ID(), err)
		}
	}
	h := r.hub(ctr.ID())
	ts := &taskStreams{hub: h}
	var outPW, errPW *io.PipeWriter
	ts.outR, outPW = io.Pipe()
	ts.errR, errPW = io.Pipe()
	ts.outW = &hubWriter{h: h, toLogger: outPW}
	ts.errW = &hubWriter{h: h, stderr: true, toLogger: errPW}
	var stdin io.Reader
	if labels[labelStdin] == "true" {
		h.mu.Lock()
		stdin = h.stdinR
		h.mu.Unlock()
	}
	ts.opts = []cio.Opt{cio.WithStreams(stdin, ts.outW, ts.errW)}
	if spec.Process != nil && spec.Process.Terminal {
		ts.opts = append(ts.opts, cio.WithTerminal)
	}
	return ts, nil
}

// copy copies the task's output into its log until the task's IO is done
// (the task exited and its FIFOs are drained), then ends the run for the
// attached clients.
func (r *Containerd) copy(id string, tio *taskIO, task containerd.Task, ts *taskStreams) {
	outR, errR, outW, errW := ts.outR, ts.errR, ts.outW, ts.errW
	tio.pid = task.Pid()
	r.mu.Lock()
	r.copiers[id] = tio
	r.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); tio.log.copyStream("stdout", outR); outR.CloseWithError(io.EOF) }()
	go func() { defer wg.Done(); tio.log.copyStream("stderr", errR); errR.CloseWithError(io.EOF) }()
	go func() {
		ctx := r.ctx(context.Background())
		if ch, err := task.Wait(ctx); err == nil {
			<-ch
		}
		if tio := task.IO(); tio != nil {
			// The output drains once the shim closes the FIFOs; bound
			// the wait, as a FIFO reattached after a daemon restart may
			// never see its writer again.
			drained := make(chan struct{})
			go func() { tio.Wait(); close(drained) }()
			select {
			case <-drained:
			case <-time.After(5 * time.Second):
				r.log.Warn("output of an exited task not drained; giving up on it", "id", id)
				tio.Cancel()
			}
			tio.Close()
		}
		outW.Close()
		errW.Close()
		wg.Wait()
		tio.log.f.Close()
		ts.hub.runEnded()
		r.mu.Lock()
		if r.copiers[id] == tio {
			delete(r.copiers, id)
		}
		r.mu.Unlock()
		close(tio.done)
	}()
}

// waitCopier waits (bounded) for the output of the container's last task to
// be drained into its log.
func (r *Containerd) waitCopier(id string) { r.waitCopierOf(context.Background(), id, 0) }

// waitCopierOf waits (bounded, and no longer than ctx) for the output of
// the container's task whose init is pid (0: its last task) to be drained
// into its log. When the copier registered is another task's (a restart
// started the next task meanwhile), the output of the task asked about was
// already drained: Start waits for it before replacing it.
func (r *Containerd) waitCopierOf(ctx context.Context, id string, pid uint32) {
	r.mu.Lock()
	tio := r.copiers[id]
	r.mu.Unlock()
	if tio == nil || (pid != 0 && tio.pid != pid) {
		return
	}
	select {
	case <-tio.done:
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		r.log.Warn("output of an exited task not drained", "id", id)
	}
}

// reattach reopens the FIFOs of the tasks running in the namespace (after a
// daemon restart) so their output reaches the log again.
func (r *Containerd) reattach(ctx context.Context) error {
	ctrs, err := r.client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("runtime: containerd: list containers: %w", err)
	}
	for _, ctr := range ctrs {
		id := ctr.ID()
		if t, err := ctr.Task(ctx, nil); err != nil {
			continue // no task: created, or stopped and deleted
		} else if st, err := t.Status(ctx); err == nil && st.Status == containerd.Stopped {
			// Its output ended with it; the shim no longer opens the
			// FIFOs, so attaching would wait forever.
			continue
		}
		streams, err := r.streams(ctx, ctr)
		if err != nil {
			return fmt.Errorf("runtime: reattach %s: %w", id, err)
		}
		task, err := ctr.Task(ctx, cio.NewAttach(streams.opts...))
		if err != nil {
			continue // gone meanwhile
		}
		tio, err := r.newTaskIO(id)
		if err != nil {
			return fmt.Errorf("runtime: reattach %s: %w", id, err)
		}
		r.copy(id, tio, task, streams)
	}
	return nil
}

// State reports the container's status from its task.
func (r *Containerd) State(ctx context.Context, id string) (State, error) {
	if err := checkID(id); err != nil {
		return State{}, err
	}
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return State{}, notFound(id, err)
	}
	t, err := ctr.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return State{Status: StatusCreated}, nil
	}
	if err != nil {
		return State{Status: StatusUnknown}, fmt.Errorf("runtime: state %s: %w", id, err)
	}
	st, err := t.Status(ctx)
	if err != nil {
		return State{Status: StatusUnknown}, fmt.Errorf("runtime: state %s: %w", id, err)
	}
	switch st.Status {
	case containerd.Running:
		return State{Status: StatusRunning, Pid: int(t.Pid())}, nil
	case containerd.Paused, containerd.Pausing:
		return State{Status: StatusRunning, Pid: int(t.Pid()), Paused: true}, nil
	case containerd.Created:
		return State{Status: StatusCreated}, nil
	case containerd.Stopped:
		return State{Status: StatusStopped, ExitCode: int(st.ExitStatus), FinishedAt: st.ExitTime}, nil
	}
	return State{Status: StatusUnknown}, nil
}

// Wait blocks until the container's task has exited and returns its exit
// code; its output is in the log by then.
func (r *Containerd) Wait(ctx context.Context, id string) (int, error) {
	if err := checkID(id); err != nil {
		return -1, err
	}
	cctx := r.ctx(ctx)
	ctr, err := r.client.LoadContainer(cctx, id)
	if err != nil {
		return -1, notFound(id, err)
	}
	t, err := ctr.Task(cctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return -1, fmt.Errorf("runtime: wait %s: %w", id, ErrNotRunning)
		}
		return -1, fmt.Errorf("runtime: wait %s: %w", id, err)
	}
	ch, err := t.Wait(cctx)
	if err != nil {
		return -1, fmt.Errorf("runtime: wait %s: %w", id, err)
	}
	select {
	case es := <-ch:
		code, err := exitOf(ctx, id, es)
		if err != nil {
			return -1, err
		}
		// This task's output, not that of a task started since.
		r.waitCopierOf(ctx, id, t.Pid())
		return code, nil
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

// exitOf is the exit code in a task's exit status, or the error that ended
// the wait: a wait that failed is not an exit. (containerd's server may end
// a wait on its deadline a moment before ctx says so: taking its unknown
// status, 255, for an exit made stop return while the task ran on.)
func exitOf(ctx context.Context, id string, es containerd.ExitStatus) (int, error) {
	if err := es.Error(); err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		return -1, fmt.Errorf("runtime: wait %s: %w", id, err)
	}
	return int(es.ExitCode()), nil
}

// Kill sends sig to the container's init. A container without a running
// task returns ErrNotRunning.
func (r *Containerd) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return notFound(id, err)
	}
	t, err := ctr.Task(ctx, nil)
	if err != nil {
		return fmt.Errorf("runtime: kill %s: %w", id, ErrNotRunning)
	}
	if err := t.Kill(ctx, sig); err != nil {
		if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("runtime: kill %s: %w", id, ErrNotRunning)
		}
		return fmt.Errorf("runtime: kill %s: %w", id, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to timeout, then SIGKILL and waits again
// (10s). Stopping a container that is not running is a no-op.
func (r *Containerd) Stop(ctx context.Context, id string, timeout time.Duration) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	var sig syscall.Signal
	if ctr, err := r.client.LoadContainer(r.ctx(ctx), id); err == nil {
		if labels, err := ctr.Labels(r.ctx(ctx)); err == nil {
			sig = stopSignal(labels[labelStopSignal])
		}
	}
	return stopGracefully(ctx, r, id, sig, timeout)
}

// Delete removes the container for good: kills and deletes its task,
// deletes the container with its snapshot and removes its directory.
// Deleting a missing container is success.
func (r *Containerd) Delete(ctx context.Context, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	ctr, err := r.client.LoadContainer(ctx, id)
	if err == nil {
		if t, terr := ctr.Task(ctx, nil); terr == nil {
			if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("runtime: delete %s: task: %w", id, err)
			}
			r.waitCopier(id)
		}
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("runtime: delete %s: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("runtime: delete %s: %w", id, err)
	}
	if err := os.RemoveAll(r.dir(id)); err != nil {
		return fmt.Errorf("runtime: delete %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.locks, id)
	delete(r.hubs, id)
	r.mu.Unlock()
	r.log.Debug("container deleted", "id", id)
	return nil
}

// List returns the IDs of the containers in the namespace, sorted.
func (r *Containerd) List(ctx context.Context) ([]string, error) {
	ctrs, err := r.client.Containers(r.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("runtime: list: %w", err)
	}
	var ids []string
	for _, c := range ctrs {
		ids = append(ids, c.ID())
	}
	sort.Strings(ids)
	return ids, nil
}

// Exec runs args in the running container (its init's user, cwd and
// environment plus env), streams its output to stdout and stderr (nil
// discards) and returns its exit code. Cancelling ctx kills it.
func (r *Containerd) Exec(ctx context.Context, id string, args, env []string, stdout, stderr io.Writer) (int, error) {
	return r.ExecWith(ctx, id, ExecOptions{Args: args, Env: env, Stdout: stdout, Stderr: stderr})
}

// ExecOptions describe one exec.
type ExecOptions struct {
	// ID names the exec (for Resize); "" makes one up.
	ID        string
	Args, Env []string
	// Tty gives the process a TTY; all output is then on Stdout.
	Tty bool
	// ConsoleSize is the TTY's initial {height, width}; 0 leaves it unset.
	ConsoleSize [2]uint
	// Stdin, if set, is the process's stdin; its end closes it.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// User (docker exec -u, resolved in the container's /etc/passwd),
	// WorkingDir and Privileged (every capability); unset, the exec runs
	// as the container's process.
	User, WorkingDir string
	Privileged       bool
}

// ExecWith is Exec with a TTY, stdin and a chosen exec ID.
func (r *Containerd) ExecWith(ctx context.Context, id string, o ExecOptions) (int, error) {
	if len(o.Args) == 0 {
		return -1, fmt.Errorf("runtime: exec %s: no command: %w", id, ErrInvalid)
	}
	cctx := r.ctx(context.WithoutCancel(ctx))
	ctr, err := r.client.LoadContainer(cctx, id)
	if err != nil {
		return -1, notFound(id, err)
	}
	t, err := ctr.Task(cctx, nil)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, ErrNotRunning)
	}
	if st, err := t.Status(cctx); err != nil || st.Status != containerd.Running {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, ErrNotRunning)
	}
	spec, err := ctr.Spec(cctx)
	if err != nil || spec.Process == nil {
		return -1, fmt.Errorf("runtime: exec %s: spec: %v", id, err)
	}
	proc := *spec.Process
	proc.Args = o.Args
	proc.Env = mergeEnv(proc.Env, o.Env, spec.Hostname)
	proc.Terminal = o.Tty
	proc.ConsoleSize = nil
	if err := execIdentity(&proc, o, int(t.Pid())); err != nil {
		return 126, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	if o.Tty && o.ConsoleSize[0] > 0 && o.ConsoleSize[1] > 0 {
		proc.ConsoleSize = &specs.Box{Height: o.ConsoleSize[0], Width: o.ConsoleSize[1]}
	}
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	execID := o.ID
	if execID == "" {
		execID = "exec-" + randomHex(8)
	}
	var stdin *closingReader
	var stdinR io.Reader
	if o.Stdin != nil {
		stdin = &closingReader{r: o.Stdin, ready: make(chan struct{})}
		stdinR = stdin
	}
	opts := []cio.Opt{cio.WithStreams(stdinR, stdout, stderr), cio.WithFIFODir(r.opts.FIFODir)}
	if o.Tty {
		opts = append(opts, cio.WithTerminal)
	}
	p, err := t.Exec(cctx, execID, &proc, cio.NewCreator(opts...))
	if err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	defer p.Delete(cctx, containerd.WithProcessKill)
	if stdin != nil {
		// The shim holds the stdin FIFO open too: at the end of our stdin,
		// tell it to close its end, so the process sees EOF.
		stdin.onEOF = func() { p.CloseIO(cctx, containerd.WithStdinCloser) }
		close(stdin.ready)
	}
	ch, err := p.Wait(cctx)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec %s: %w", id, err)
	}
	if err := p.Start(cctx); err != nil {
		return execStartCode(err), fmt.Errorf("runtime: exec %s: %w", id, startError(err))
	}
	select {
	case es := <-ch:
		p.IO().Wait()
		return int(es.ExitCode()), nil
	case <-ctx.Done():
		p.Kill(cctx, unix.SIGKILL)
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
		return -1, ctx.Err()
	}
}

// closingReader reads r and runs onEOF (once it is set) when r ends.
type closingReader struct {
	r     io.Reader
	ready chan struct{}
	onEOF func()
	once  sync.Once
}

func (c *closingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil {
		c.once.Do(func() {
			<-c.ready
			c.onEOF()
		})
	}
	return n, err
}

// execStartCode is the exit code Docker reports for an exec that could not
// start: 127 when the command was not found, 126 when it could not run.
func execStartCode(err error) int {
	msg := err.Error()
	switch {
	case bytes.Contains([]byte(msg), []byte("no such file or directory")), bytes.Contains([]byte(msg), []byte("executable file not found")):
		return 127
	}
	return 126
}

// Logs writes the container's output so far to stdout and stderr (either
// may be nil). With follow it keeps streaming until the container has
// stopped and the log is drained, or ctx ends.
func (r *Containerd) Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error {
	return r.LogsWith(ctx, id, stdout, stderr, LogOptions{Follow: follow, Tail: -1})
}

// LogsWith is Logs with docker logs' options.
func (r *Containerd) LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o LogOptions) error {
	if err := checkID(id); err != nil {
		return err
	}
	if _, err := r.client.LoadContainer(r.ctx(ctx), id); err != nil {
		return notFound(id, err)
	}
	return readLog(ctx, filepath.Join(r.dir(id), logFile), stdout, stderr, o, func() (bool, error) {
		st, err := r.State(ctx, id)
		if err != nil {
			return false, err
		}
		if st.Status == StatusStopped {
			r.waitCopier(id)
			return true, nil
		}
		return false, nil
	})
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

// PinNetns bind-mounts the calling process's network namespace at p (a
// stable handle for HostNetns), replacing an earlier pin.
func PinNetns(p string) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o711); err != nil {
		return err
	}
	unix.Unmount(p, unix.MNT_DETACH)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin the host network namespace at %s: %w", p, err)
	}
	return nil
}

// RootFS returns a host directory holding the container's root file system
// (for docker cp) and a release to call when done: /proc/PID/root of a
// running task (its mounts in place), or else the container's snapshot
// mounted in a temporary directory (mounted is then true: the container's
// own binds and volumes are not there).
func (r *Containerd) RootFS(ctx context.Context, id string) (root string, mounted bool, release func(), err error) {
	if err := checkID(id); err != nil {
		return "", false, nil, err
	}
	ctx = r.ctx(ctx)
	// Held while the snapshot is mounted here: a start waits for it.
	unlock := r.lock(id)
	ok := false
	defer func() {
		if !ok {
			unlock()
		}
	}()
	ctr, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return "", false, nil, notFound(id, err)
	}
	if t, err := ctr.Task(ctx, nil); err == nil {
		if st, err := t.Status(ctx); err == nil && (st.Status == containerd.Running || st.Status == containerd.Paused) {
			return fmt.Sprintf("/proc/%d/root", t.Pid()), false, func() {}, nil
		}
	}
	info, err := ctr.Info(ctx)
	if err != nil {
		return "", false, nil, notFound(id, err)
	}
	mounts, err := r.client.SnapshotService(info.Snapshotter).Mounts(ctx, info.SnapshotKey)
	if err != nil {
		return "", false, nil, fmt.Errorf("runtime: %s: snapshot: %w", id, err)
	}
	dir, err := os.MkdirTemp(r.opts.FIFODir, "rootfs-")
	if err != nil {
		return "", false, nil, err
	}
	if err := mount.All(mounts, dir); err != nil {
		os.Remove(dir)
		return "", false, nil, fmt.Errorf("runtime: %s: mount snapshot: %w", id, err)
	}
	ok = true
	return dir, true, func() {
		if err := mount.UnmountAll(dir, unix.MNT_DETACH); err != nil {
			r.log.Warn("unmount a container's root", "dir", dir, "err", err)
		}
		os.Remove(dir)
		unlock()
	}, nil
}
