// Package engine is vxnet's core: it owns the networks, endpoints,
// sandboxes and containers of one host, decides what must exist, and asks
// the drivers, the runtime, the allocator and the firewall to make it so.
//
// State lives in one place, the Engine, behind one short-held mutex (mu)
// that guards only the in-memory view: no store, runtime, netlink, nft or
// file I/O happens while it is held, so reads (ps, network ls, inspect,
// info) never wait for I/O. Mutations reserve under mu, do their I/O
// unlocked (serialised per object by an op lock), and commit to memory
// under mu only after the local store write succeeded. See
// docs/concurrency.md for the lock order. Values are passed by ID and
// copied out; there are no back-pointers between objects.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
	evlog "github.com/vxnet/vxnet/internal/events"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/store"
	"github.com/vxnet/vxnet/internal/volume"
)

// Options wires an Engine.
type Options struct {
	DataRoot string
	ExecRoot string
	// BridgeIP is --bip: the default bridge's gateway with its prefix
	// (default 172.17.0.1/16).
	BridgeIP netip.Prefix
	Store    *store.Store
	Drivers  []driver.Driver
	IPAM     IPAM
	Runtime  Runtime
	Images   Images
	Firewall Firewall
	// Volumes is the local volume store; nil refuses volumes.
	Volumes *volume.Store
	// DNS is the embedded DNS server for containers on user-defined
	// networks; nil: none (their resolv.conf keeps the host's resolvers).
	DNS *dns.Server
	// HostRoutes lists the host's routes, so default pools that overlap
	// them are skipped. Nil means none.
	HostRoutes func() ([]netip.Prefix, error)
	// Cluster is the cluster store for global-scope networks; nil in
	// local mode, or until AttachCluster when ClusterPending.
	Cluster *cluster.Cluster
	// ClusterPending says cluster mode is configured but the store could
	// not be reached yet; AttachCluster completes it.
	ClusterPending bool
	// NodeID is this host's node ID (cluster mode).
	NodeID string
	// VTEP is this host's underlay address (cluster mode).
	VTEP netip.Addr
	// VXLANPort is the overlay's UDP port (for the firewall).
	VXLANPort int
	// ControlPorts are the host's TCP ports containers must not reach
	// (cluster store, join service, API over TCP), for the firewall.
	ControlPorts []int
	// ResyncInterval is the period of the overlay data plane resync.
	ResyncInterval time.Duration
	// OnLeave is called after a clean leave of the cluster (the daemon
	// stops).
	OnLeave func()
	Logger  *slog.Logger
	Now     func() time.Time

	// NoNetns makes sandboxes without network namespaces, for tests that
	// run without root on fake drivers (internal/engine/enginetest); the
	// daemon never sets it.
	NoNetns bool

	// noNetns makes sandboxes without namespaces (unit tests without root).
	noNetns bool
	// portCheck replaces the bind test of host ports (unit tests).
	portCheck portCheck
	// adverts replaces the cluster store as the source of advertisements
	// (unit tests; adverts.go).
	adverts peerctl.Source
}

// Engine is the core of one daemon.
type Engine struct {
	opts Options
	log  *slog.Logger

	// mu guards the maps below and is the innermost lock but for leaves
	// (the firewall's result, the peer controller's state): never held
	// while doing I/O or taking any other lock.
	mu         sync.Mutex
	networks   map[string]model.Network   // by ID
	endpoints  map[string]model.Endpoint  // by ID
	containers map[string]model.Container // by ID
	sandboxes  map[string]model.Sandbox   // by container ID
	drivers    map[string]driver.Driver
	portCheck  portCheck
	// waiters is the run each container's exit watcher watches (a
	// number from watchGen): a watcher whose run was replaced by a new
	// start leaves the record alone.
	waiters  map[string]uint64
	watchGen uint64
	exitSubs map[string][]exitSub
	// cl is the cluster store, set at New or later by AttachCluster.
	cl atomic.Pointer[cluster.Cluster]
	// peers is the overlay peer controller's engine half (peers.go): the
	// advertisement sets of global networks, under its own lock.
	peers *peerctl.Controller
	// externals are namespaces attached by other runtimes, by ID
	// (external.go).
	externals map[string]model.External
	// Reservations of operations in flight (under mu): container names
	// being created, in-flight attaches per network (network rm refuses),
	// networks being removed (attaches refuse), local network names being
	// created.
	pendingNames map[string]bool
	// pendingVolumes counts the creates mounting each volume that are not
	// committed yet (a volume rm must not take it meanwhile).
	pendingVolumes  map[string]int
	attaching       map[string]int
	removingNets    map[string]bool
	pendingNetNames map[string]bool
	// pendingPorts are host ports chosen by starts in flight (ports.go).
	pendingPorts map[string][]model.PortMapping

	// ctrOps serialises the operations on one container (create, start,
	// stop, rm, connect, disconnect); outermost lock.
	ctrOps keyedMutex
	// gwMu serialises the creation of the gateway bridge network and its
	// IPv6 upgrade (write lock) against addresses being taken on it (read).
	gwMu sync.RWMutex
	// hostsMu serialises writers of the per-container hosts files.
	hostsMu sync.Mutex
	// fw applies the firewall outside mu.
	fw firewallApplier
	// proxies are the userland proxies of ports published on ::1
	// (proxy.go), reconciled with the firewall.
	proxies proxySet
	// crash holds the armed crash points (VXNET_CRASHPOINT).
	crash map[string]bool
	// events are the recent events and their subscribers (/events).
	events *evlog.Log
	// restarts are the containers waiting out a restart policy's back-off,
	// and each container's current back-off (under mu; restart.go).
	restarts map[string]*restartState

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds an Engine; Start restores state and reconciles the kernel.
func New(opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.noNetns = opts.noNetns || opts.NoNetns
	if !opts.BridgeIP.IsValid() {
		opts.BridgeIP = netip.MustParsePrefix("172.17.0.1/16")
	}
	e := &Engine{
		opts:       opts,
		log:        opts.Logger,
		networks:   map[string]model.Network{},
		endpoints:  map[string]model.Endpoint{},
		containers: map[string]model.Container{},
		sandboxes:  map[string]model.Sandbox{},
		drivers:    map[string]driver.Driver{},
		waiters:    map[string]uint64{},

		pendingNames:    map[string]bool{},
		pendingVolumes:  map[string]int{},
		attaching:       map[string]int{},
		removingNets:    map[string]bool{},
		pendingNetNames: map[string]bool{},
		pendingPorts:    map[string][]model.PortMapping{},
		crash:           crashPointsFromEnv(),
		events:          evlog.New(0, opts.Now),
		restarts:        map[string]*restartState{},
	}
	for _, d := range opts.Drivers {
		e.drivers[d.Type()] = d
	}
	e.portCheck = bindCheck
	if opts.portCheck != nil {
		e.portCheck = opts.portCheck
	}
	for _, dir := range []string{e.netnsDir(), e.filesDir()} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.peers = e.newPeerController()
	if opts.Cluster != nil {
		e.cl.Store(opts.Cluster)
	}
	return e, nil
}

func (e *Engine) netnsDir() string { return filepath.Join(e.opts.ExecRoot, "netns") }
func (e *Engine) filesDir() string { return filepath.Join(e.opts.DataRoot, "sandboxes") }

// Close stops background work. Containers keep running.
func (e *Engine) Close() {
	e.cancel()
	// The controller's last goroutines may still start a firewall apply.
	e.peers.Close()
	e.fw.mu.Lock()
	e.stopProxies()
	e.fw.mu.Unlock()
	e.wg.Wait()
}

func (e *Engine) now() time.Time { return e.opts.Now().UTC() }

// errf wraps a class sentinel with a message in Docker's words.
func errf(class error, format string, args ...any) error {
	return &classErr{class: class, msg: fmt.Sprintf(format, args...)}
}

type classErr struct {
	class error
	msg   string
}

func (c *classErr) Error() string { return c.msg }
func (c *classErr) Unwrap() error { return c.class }

// errLines is errf for a message that keeps Docker's line breaks
// (api.MultiLine).
func errLines(class error, format string, args ...any) error {
	return &linesErr{classErr{class: class, msg: fmt.Sprintf(format, args...)}}
}

type linesErr struct{ classErr }

func (*linesErr) MultiLine() {}

// classify makes sure err carries an error class, defaulting to class.
func classify(err error, class error) error {
	for _, c := range []error{model.ErrInvalid, model.ErrForbidden, model.ErrNotFound, model.ErrConflict, model.ErrUnavailable} {
		if errors.Is(err, c) {
			return err
		}
	}
	return &classErr{class: class, msg: err.Error()}
}

// Namespace operations go through these so unit tests can run without root.
func (e *Engine) createNetns(path string) error {
	if e.opts.noNetns {
		return nil
	}
	return netns.Create(path)
}

func (e *Engine) deleteNetns(path string) error {
	if e.opts.noNetns {
		return nil
	}
	return netns.Delete(path)
}

func (e *Engine) netnsPinned(path string) bool {
	return e.opts.noNetns || netns.IsPinned(path)
}

// cluster returns the cluster store, nil when there is none (yet).
func (e *Engine) cluster() *cluster.Cluster { return e.cl.Load() }

// AttachCluster completes cluster mode once the store is reachable (the
// daemon started while it was not): global networks are refreshed, local
// overlay endpoints advertised and watched.
func (e *Engine) AttachCluster(cl *cluster.Cluster) {
	e.cl.Store(cl)
	e.restoreGlobal(e.ctx)
	if err := e.sweepHeld(e.ctx); err != nil {
		e.log.Warn("release held global addresses", "err", err)
	}
	e.startBackground()
	e.applyFirewall()
	e.log.Info("cluster store reached; cluster mode active")
}
