// Package cluster is vxnet's global scope: node membership, global network
// definitions, VNIs, global IPAM and endpoint advertisements, all kept in
// etcd.
//
// The store is etcd itself, never a home-made replication. It is either
// external (Options.Endpoints, from --cluster-store etcd://H1:2379,H2:2379)
// or embedded: the first host starts a one-member cluster (Options.Init),
// the next ones join it (Options.Join) as learners, promoted two at a time
// so that the number of voters stays odd (1, 3, 5, up to Options.Voters);
// two learners are kept as spares that replace a voter down for longer than
// Options.VoterGrace, later hosts are plain clients (membership.go). A member
// that restarts with its data directory rejoins with its data.
//
// The embedded cluster is secured by its own CA (package pki): every link to
// etcd, client and peer, is mutual TLS with member certificates, a new host
// joins through a voting member's join service with a join token (see
// joinsvc.go), and etcd's authentication maps each certificate to a user
// allowed to write only its own records and the global ones (security.go).
//
// Key layout, under Options.Prefix (default /vxnet/v1); the per-node parts
// come first in the node's own keys, so etcd range permissions can say "this
// node's keys":
//
//	nodes/<node>                  durable node record (hostname, address, last seen)
//	alive/<node>                  leased: present while the node keeps its lease
//	adverts/<node>/<network>/<ep> leased: endpoint IP, MAC, VTEP, node
//	networks/id/<id>              durable network definition (model.Network JSON)
//	networks/name/<name>          durable: network ID, makes names unique
//	vni/<vni>                     durable: network ID, makes VNIs unique
//	ipam/pools/<subnet>           durable: network ID, makes subnets disjoint
//	ipam/subnets/<id>/<nnn>       durable: ipam.Subnet state of the nnn-th subnet
//
// Writes that must not collide use transactions on revisions. Liveness is a
// node lease with a short TTL; a host's advertisements hang off that lease,
// so they vanish when the host dies. When the lease is lost (an outage longer
// than the TTL) the Cluster grants a new one, re-registers, re-publishes the
// advertisements it made and calls the OnLease callbacks.
//
// Every store call has a deadline (Options.RequestTimeout) and fails with an
// error wrapping model.ErrUnavailable whose text starts "cluster store
// unreachable: ". Watches never give up: they resume from the last revision
// seen and list again when etcd compacted past it.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/vxnet/vxnet/internal/model"
)

// Defaults for Options.
const (
	DefaultPrefix         = "/vxnet/v1"
	DefaultClientPort     = 2379
	DefaultPeerPort       = 2380
	DefaultVoters         = 3
	DefaultNodeTTL        = 10 * time.Second
	DefaultRequestTimeout = 3 * time.Second
	DefaultStartTimeout   = 60 * time.Second
)

// Node roles.
const (
	RoleVoter   = "voter"
	RoleLearner = "learner"
	RoleClient  = "client"
)

// Node states.
const (
	StateUp   = "up"
	StateDown = "down"
)

// Options configure Open. Either Endpoints (external etcd) or one of Init,
// Join (embedded etcd) must be set; a DataDir holding a member from an
// earlier run restarts that member whatever Init and Join say.
type Options struct {
	// NodeID identifies this host for good (see LoadOrCreateNodeID).
	NodeID   string
	Hostname string
	// AdvertiseAddr is the address other hosts reach this one on: node
	// records, embedded etcd listeners and overlay VTEP.
	AdvertiseAddr netip.Addr

	// External mode.
	Endpoints []string // host:port, as returned by ParseStoreURL
	CAFile    string   // TLS to the external store (all three or none)
	CertFile  string
	KeyFile   string

	// Embedded mode.
	DataDir    string // e.g. <data-root>/etcd
	Init       bool   // start a new cluster
	Join       string // ADDR[:PORT] of a voting member's join service
	ClientPort int    // default 2379
	PeerPort   int    // default 2380
	// ClientHTTPPort is the loopback port of the embedded etcd's HTTP
	// endpoints (/health, /version, /metrics; TLS with a client
	// certificate); 0: a port the kernel chooses. gRPC keeps ClientPort
	// to itself.
	ClientHTTPPort int
	Voters         int // voting members wanted, odd; default 3
	// VoterGrace is how long a voter may be down before a learner takes
	// its place; default 30 s.
	VoterGrace time.Duration

	// Embedded mode security (see package pki).
	PKIDir    string // certificates and keys; default <DataDir>/../cluster
	JoinToken string // needed by Join while PKIDir holds no certificate
	JoinPort  int    // join service port of voting members, default 2377
	// CertExpiry, with Init, sets the lifetime of the cluster's member
	// certificates (kept in the store, used by every voting member when it
	// signs; default 90 days). Zero keeps the cluster's setting; only
	// allowed with Init.
	CertExpiry time.Duration

	Prefix         string        // key prefix, default /vxnet/v1
	NodeTTL        time.Duration // node lease TTL, default 10 s
	RequestTimeout time.Duration // deadline of every store call, default 3 s
	StartTimeout   time.Duration // embedded member start and promotion, default 60 s

	// IPAMGCInterval is the period of the address garbage collector run by
	// one elected member (default 30 s); IPAMGrace is how long a down
	// node's addresses, and an endpoint's address without its
	// advertisement, are kept (default 60 s). Addresses of removed nodes
	// go at the next run.
	IPAMGCInterval time.Duration
	IPAMGrace      time.Duration

	// singleKeyIPAM selects the allocator before blocks (one key per
	// subnet), for the benchmark comparing both.
	singleKeyIPAM bool
	// For the control-plane simulation, which runs hundreds of members in
	// one process on a few cores: keepAliveTimeout replaces the client's
	// 2 s gRPC keepalive timeout (a member starved of CPU is not a dead
	// store), and advertGap is the least time between two deliveries of a
	// network's set to one WatchAdverts follower (a burst of changes then
	// costs each follower one check of the set per gap, not one per
	// change). Zero: the defaults (2 s; deliver at once).
	keepAliveTimeout time.Duration
	advertGap        time.Duration

	// Logger receives the package's logs and etcd's own; nil discards.
	Logger *slog.Logger
	// EtcdLogLevel is the lowest level of etcd's own messages that are
	// passed to Logger; default slog.LevelError (etcd is chatty).
	EtcdLogLevel *slog.Level
}

// Cluster is a connection to the cluster store, plus the embedded etcd
// member when this host runs one. It is safe for concurrent use. After Close
// or Leave every method fails with an unavailable error.
type Cluster struct {
	opts   Options
	log    *slog.Logger
	cli    *clientv3.Client
	etcd   *embed.Etcd // nil unless this host runs a member
	member uint64      // etcd member ID when etcd != nil
	id     *identity   // embedded mode: this member's certificates
	// admin acts as etcd's root user (membership, users, the join
	// token); only on voting members, which hold the CA key.
	admin *clientv3.Client

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	stopLease func() // stops the lease goroutine and waits for it
	stopJoin  func() // stops the join service
	bgDone    chan struct{}
	// stopMembership stops the membership goroutine (hosts running a
	// member) and waits for it.
	stopMembership func()
	gcDone         chan struct{} // closed when the address collector stops

	// pubMu serialises writes of leased keys (advertisements) with lease
	// changes, so a re-registration never races an Advertise or Withdraw.
	pubMu sync.Mutex

	ipamLock  chan struct{}         // one global allocation at a time from this host
	ipamCache map[string]*ipamCache // by network ID, under ipamLock (blocks.go)

	mu      sync.Mutex
	lease   clientv3.LeaseID
	adverts map[string]Advert // key -> advert published by this node
	// Keys whose last Advertise or Withdraw failed, retried by the lease
	// goroutine.
	pendingPut map[string]bool
	pendingDel map[string]bool
	callbacks  map[int]func(context.Context)
	nextCB     int
	closed     bool

	// Store health (health.go) and the last node list read, served
	// marked stale while the store does not answer.
	lastContact time.Time
	lastErr     string
	lastNodes   []Node
	viewAt      time.Time // when lastNodes was read
	// written is the node record last written (LastSeen aside), so the
	// record is written again only when it changes; seenDenied is set when
	// etcd refuses this node's seen/ key (a role granted before that key
	// existed): the record then carries the last-seen time, as before.
	written    nodeRecord
	seenDenied bool

	// recMu serialises the writes of this node's record (refreshRecord,
	// which the membership goroutine calls too) with Leave: once leaving
	// is set under it, no write re-creates the record Leave deletes. Taken
	// before mu; held across one store write, never by reads.
	recMu   sync.Mutex
	leaving bool
	// afterLeaveDelete, when set (tests), runs in Leave right after the
	// node record is deleted.
	afterLeaveDelete func()

	// casLost counts allocations that lost a compare-and-swap (for the
	// benchmark).
	casLost atomic.Int64

	// ownerReads counts the owner reads of CheckAdverts (the owner watch
	// lagged; for the benchmark).
	ownerReads atomic.Int64
	// ownerEvents and nodeEvents count the events of the block (owner)
	// and node watches (for the benchmark).
	ownerEvents, nodeEvents atomic.Int64

	// relists counts watch re-lists after compaction (for tests).
	relists int

	// invalid remembers the store revision of each invalid record already
	// logged, so a watch re-delivering its set does not log it again.
	invalid map[string]invalidSeen

	nodeAddrs map[string]netip.Addr // registered node addresses (valid records)
	nodeRecs  map[string]nodeSeen   // the same records, for the stale node list
	nodeCBs   map[int]func()
	owners    *ownerCache    // owners of followed networks' addresses (owners.go)
	hub       *advertHub     // the shared advertisement watch (hub.go)
	bg        sync.WaitGroup // the node watch
}

// Open connects to the cluster store (starting or joining the embedded etcd
// member if asked), registers this node under a fresh lease and keeps the
// lease alive until Close. It fails with an unavailable error when the store
// cannot be reached.
func Open(ctx context.Context, opts Options) (*Cluster, error) {
	opts, err := withDefaults(opts)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		opts:       opts,
		log:        opts.Logger.With("component", "cluster"),
		adverts:    make(map[string]Advert),
		pendingPut: make(map[string]bool),
		pendingDel: make(map[string]bool),
		callbacks:  make(map[int]func(context.Context)),
		ipamLock:   make(chan struct{}, 1),
		invalid:    make(map[string]invalidSeen),
		nodeCBs:    make(map[int]func()),
		ipamCache:  make(map[string]*ipamCache),
		owners:     newOwnerCache(),
	}
	c.hub = newAdvertHub(c)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			c.shutdown()
		}
	}()
	if len(opts.Endpoints) > 0 {
		if c.cli, err = c.newClient(opts.Endpoints, true); err != nil {
			return nil, err
		}
		if err := c.checkUnderlayFamily(ctx); err != nil {
			return nil, err
		}
	} else if err := c.openEmbedded(ctx); err != nil {
		return nil, err
	}
	if err := c.register(ctx); err != nil {
		return nil, err
	}
	if c.admin != nil {
		if err := c.startJoinService(); err != nil {
			return nil, err
		}
	}
	rev, err := c.loadNodes(ctx)
	if err != nil {
		return nil, err
	}
	c.watchNodes(rev)
	c.startLeaseLoop()
	if c.id != nil {
		c.bgDone = make(chan struct{})
		go func() {
			defer close(c.bgDone)
			c.certLoop(c.ctx)
		}()
	}
	c.Nodes(ctx) // a first view, served stale if the store goes away
	go c.watchHealth(c.ctx.Done())
	c.startIPAMGC()
	if c.etcd != nil {
		c.startMembershipLoop()
	}
	ok = true
	return c, nil
}

func withDefaults(o Options) (Options, error) {
	if o.NodeID == "" {
		return o, fmt.Errorf("cluster: open: %w: node ID is required", model.ErrInvalid)
	}
	if strings.ContainsAny(o.NodeID, "/ \t\n") {
		return o, fmt.Errorf("cluster: open: %w: node ID %q contains a slash or space", model.ErrInvalid, o.NodeID)
	}
	embedded := o.Init || o.Join != ""
	if len(o.Endpoints) > 0 && embedded {
		return o, fmt.Errorf("cluster: open: %w: an external store and an embedded member are exclusive", model.ErrInvalid)
	}
	if o.Init && o.Join != "" {
		return o, fmt.Errorf("cluster: open: %w: init and join are exclusive", model.ErrInvalid)
	}
	if len(o.Endpoints) == 0 {
		if o.DataDir == "" {
			return o, fmt.Errorf("cluster: open: %w: no store endpoints and no data directory for an embedded member", model.ErrInvalid)
		}
		if !o.AdvertiseAddr.IsValid() {
			return o, fmt.Errorf("cluster: open: %w: an embedded member needs an advertise address", model.ErrInvalid)
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return o, fmt.Errorf("cluster: open: %w: TLS certificate and key go together", model.ErrInvalid)
	}
	if o.ClientPort == 0 {
		o.ClientPort = DefaultClientPort
	}
	if o.PeerPort == 0 {
		o.PeerPort = DefaultPeerPort
	}
	if o.ClientHTTPPort < 0 || o.ClientHTTPPort > 65535 {
		return o, fmt.Errorf("cluster: open: %w: etcd HTTP port %d out of range", model.ErrInvalid, o.ClientHTTPPort)
	}
	if o.Voters == 0 {
		o.Voters = DefaultVoters
	}
	if o.Voters < 1 || o.Voters%2 == 0 {
		return o, fmt.Errorf("cluster: open: %w: voters must be odd, not %d", model.ErrInvalid, o.Voters)
	}
	if o.JoinPort == 0 {
		o.JoinPort = DefaultJoinPort
	}
	if o.CertExpiry != 0 && !o.Init {
		return o, fmt.Errorf("cluster: open: %w: the certificate expiry is the cluster's setting, given where it is initialised", model.ErrInvalid)
	}
	if o.CertExpiry != 0 && o.CertExpiry < 10*time.Second {
		return o, fmt.Errorf("cluster: open: %w: certificate expiry %s is below 10s", model.ErrInvalid, o.CertExpiry)
	}
	if o.PKIDir == "" && o.DataDir != "" {
		o.PKIDir = filepath.Join(filepath.Dir(filepath.Clean(o.DataDir)), "cluster")
	}
	if o.VoterGrace == 0 {
		o.VoterGrace = DefaultVoterGrace
	}
	if o.VoterGrace < 0 {
		return o, fmt.Errorf("cluster: open: %w: voter grace period %s is negative", model.ErrInvalid, o.VoterGrace)
	}
	if o.IPAMGCInterval == 0 {
		o.IPAMGCInterval = 30 * time.Second
	}
	if o.IPAMGrace == 0 {
		o.IPAMGrace = time.Minute
	}
	if o.IPAMGCInterval < 0 || o.IPAMGrace < 0 {
		return o, fmt.Errorf("cluster: open: %w: IPAM garbage collection interval and grace must be positive", model.ErrInvalid)
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	o.Prefix = "/" + strings.Trim(o.Prefix, "/")
	if o.NodeTTL == 0 {
		o.NodeTTL = DefaultNodeTTL
	}
	if o.NodeTTL < 2*time.Second {
		return o, fmt.Errorf("cluster: open: %w: node TTL %s is below 2s", model.ErrInvalid, o.NodeTTL)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.EtcdLogLevel == nil {
		l := slog.LevelError
		o.EtcdLogLevel = &l
	}
	return o, nil
}

// NodeID returns this node's ID.
func (c *Cluster) NodeID() string { return c.opts.NodeID }

// Close stops keeping the node lease alive, closes the store connection and
// stops the embedded member, if any. It revokes nothing: the node shows down
// once its lease expires, and its advertisements go with it, just as after a
// crash. A restarted daemon registers again with the same node ID. Close is
// safe to call more than once.
func (c *Cluster) Close() error {
	c.shutdown()
	return nil
}

func (c *Cluster) shutdown() {
	c.closeOnce.Do(c.doShutdown)
}

func (c *Cluster) doShutdown() {
	c.mu.Lock()
	c.closed = true
	stop, stopJoin, stopM, gcDone := c.stopLease, c.stopJoin, c.stopMembership, c.gcDone
	c.mu.Unlock()
	c.cancel()
	if stopJoin != nil {
		stopJoin()
	}
	if stop != nil {
		stop()
	}
	if stopM != nil {
		stopM()
	}
	if gcDone != nil {
		<-gcDone
	}
	if c.bgDone != nil {
		<-c.bgDone
	}
	c.bg.Wait()
	if c.cli != nil {
		c.cli.Close()
	}
	if c.admin != nil {
		c.admin.Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
		<-c.etcd.Server.StopNotify()
	}
}

// reqCtx returns a context for one store call: the caller's, bounded by
// RequestTimeout and cancelled by Close.
func (c *Cluster) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (c *Cluster) key(parts ...string) string {
	return c.opts.Prefix + "/" + strings.Join(parts, "/")
}

func (c *Cluster) checkOpen() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return unavailable("", errors.New("cluster connection closed"))
	}
	return nil
}

// unavailableError wraps a store failure: it prints "cluster store
// unreachable: OP: CAUSE" and matches both model.ErrUnavailable and the cause.
type unavailableError struct {
	op    string
	cause error
}

func (e *unavailableError) Error() string {
	if e.op == "" {
		return "cluster store unreachable: " + e.cause.Error()
	}
	return "cluster store unreachable: " + e.op + ": " + e.cause.Error()
}

func (e *unavailableError) Unwrap() []error { return []error{model.ErrUnavailable, e.cause} }

// unavailable wraps an error returned by etcd for operation op.
func unavailable(op string, err error) error {
	var u *unavailableError
	if errors.As(err, &u) {
		return err
	}
	return &unavailableError{op: op, cause: err}
}

// logInvalid logs an invalid record read from the store (kind: "network",
// "advertisement", ...) with its key, once per key and revision, and at
// most once a minute per key (a member rewriting a bad record cannot flood
// the log).
func (c *Cluster) logInvalid(key string, rev int64, kind string, err error) {
	now := time.Now()
	c.mu.Lock()
	seen, ok := c.invalid[key]
	log := !ok || (seen.rev != rev && now.Sub(seen.at) >= time.Minute)
	if log {
		if len(c.invalid) >= 10000 {
			clear(c.invalid)
		}
		c.invalid[key] = invalidSeen{rev, now}
	}
	c.mu.Unlock()
	if log {
		c.log.Warn("skipping invalid "+kind+" read from the cluster store", "key", key, "rev", rev, "err", err)
	}
}

// invalidSeen is when an invalid record was last logged, and at which
// revision.
type invalidSeen struct {
	rev int64
	at  time.Time
}
