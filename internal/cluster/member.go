package cluster

// The embedded etcd member: bootstrap, join (as a learner, then promoted),
// restart from an existing data directory, and leave.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/pki"
)

// newClient connects to endpoints (host:port or URLs) as this member (or
// with the external store's TLS files). It does not wait for the store to
// answer. With autoSync the endpoints follow the etcd membership.
func (c *Cluster) newClient(eps []string, autoSync bool) (*clientv3.Client, error) {
	return c.newClientAs(eps, autoSync, false)
}

// newAdminClient connects to endpoints as etcd's root user.
func (c *Cluster) newAdminClient(eps []string) (*clientv3.Client, error) {
	if c.id == nil || c.id.ca.Key == nil {
		return c.newClient(eps, false)
	}
	return c.newClientAs(eps, false, true)
}

func (c *Cluster) newClientAs(eps []string, autoSync, root bool) (*clientv3.Client, error) {
	kaTimeout := 2 * time.Second
	if c.opts.keepAliveTimeout > 0 {
		kaTimeout = c.opts.keepAliveTimeout
	}
	cfg := clientv3.Config{
		DialTimeout:          c.opts.RequestTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: kaTimeout,
		Logger:               newZapLogger(c.opts.Logger, *c.opts.EtcdLogLevel),
		Context:              c.ctx,
		// Reconnect within seconds after an outage (gRPC's default backoff
		// grows to two minutes).
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: c.opts.RequestTimeout,
		})},
	}
	if autoSync {
		cfg.AutoSyncInterval = 30 * time.Second
	}
	scheme := "http://"
	switch {
	case c.id != nil && benchPlaintext:
	case c.id != nil:
		cfg.TLS = c.id.clientTLS(root)
		scheme = "https://"
	case c.opts.CAFile != "" || c.opts.CertFile != "":
		info := transport.TLSInfo{CertFile: c.opts.CertFile, KeyFile: c.opts.KeyFile, TrustedCAFile: c.opts.CAFile}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster: open: load TLS files: %w", err)
		}
		cfg.TLS = tc
		scheme = "https://"
	}
	for _, ep := range eps {
		if strings.Contains(ep, "://") {
			cfg.Endpoints = append(cfg.Endpoints, ep)
		} else {
			cfg.Endpoints = append(cfg.Endpoints, scheme+ep)
		}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	return cli, nil
}

// urlFor is the URL of an embedded etcd listener: always TLS.
func urlFor(a netip.Addr, port int) *url.URL {
	if benchPlaintext {
		return &url.URL{Scheme: "http", Host: netip.AddrPortFrom(a, uint16(port)).String()}
	}
	return &url.URL{Scheme: "https", Host: netip.AddrPortFrom(a, uint16(port)).String()}
}

// httpURLFor is the URL of the embedded etcd's HTTP listener (/health,
// /version, /metrics and etcd's JSON gateway): on loopback only, TLS with
// client certificates like the other listeners; port 0 lets the kernel
// choose one.
func httpURLFor(port int) *url.URL {
	return urlFor(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)
}

// setClientListeners makes etcd serve gRPC alone on client and its HTTP
// endpoints on http. With one TLS client URL for both, etcd serves gRPC
// through net/http's HTTP/2 server (grpc-go's ServeHTTP: a TLS write per
// message, and per-stream goroutines and locks); on a URL of its own, gRPC
// runs on grpc-go's own transport, which costs etcd far less CPU per watch
// event and per keepalive with many clients (BENCHMARKS.md, control-plane
// simulation). A nil http keeps the shared listener.
func setClientListeners(cfg *embed.Config, client, http *url.URL) {
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.ListenClientHttpUrls = nil
	if http != nil {
		cfg.ListenClientHttpUrls = []url.URL{*http}
	}
}

// memberDirExists reports whether dataDir holds an etcd member from an
// earlier run.
func memberDirExists(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, "member", "wal"))
	return err == nil
}

// openEmbedded starts, joins or restarts the embedded member, or connects
// as a plain client when the cluster already has enough voters.
func (c *Cluster) openEmbedded(ctx context.Context) error {
	o := c.opts
	peer := urlFor(o.AdvertiseAddr, o.PeerPort)
	client := urlFor(o.AdvertiseAddr, o.ClientPort)
	switch {
	case memberDirExists(o.DataDir):
		c.log.Info("restarting embedded etcd member", "dir", o.DataDir)
		var err error
		if c.id, err = loadIdentity(pki.Dir(o.PKIDir)); err != nil {
			return fmt.Errorf("cluster: restart member: %w (the etcd data in %s needs this member's certificates in %s)", err, o.DataDir, o.PKIDir)
		}
		if err := c.startMember(ctx, embed.ClusterStateFlagExisting, o.NodeID+"="+peer.String()); err != nil {
			return err
		}
		if err := c.connectMember(ctx); err != nil {
			return err
		}
		return c.storeCertExpiry(ctx)
	case o.Init:
		c.log.Info("starting new embedded etcd cluster", "peer", peer.String(), "client", client.String())
		var err error
		if c.id, err = c.newPKI(); err != nil {
			return fmt.Errorf("cluster: init: %w", err)
		}
		if err := c.startMember(ctx, embed.ClusterStateFlagNew, o.NodeID+"="+peer.String()); err != nil {
			return err
		}
		if err := c.connectMember(ctx); err != nil {
			return err
		}
		return c.setupAuth(ctx)
	case o.Join != "":
		return c.join(ctx)
	}
	return fmt.Errorf("cluster: open: %w: data directory %s holds no member; init or join a cluster", model.ErrInvalid, o.DataDir)
}

// join asks a member's join service to admit this host, then starts its
// etcd member as a learner (the leader's membership loop promotes it when
// that keeps the number of voters odd) or connects as a client (joinRole).
func (c *Cluster) join(ctx context.Context) error {
	o := c.opts
	resp, err := c.requestJoin(ctx)
	if err != nil {
		return err
	}
	if !resp.Voter {
		c.log.Info("joined as a client", "voters", len(resp.Endpoints))
		if c.cli, err = c.newClient(resp.Endpoints, true); err != nil {
			return err
		}
		return nil
	}
	c.member = resp.MemberID
	c.log.Info("joining as a learner", "member", strconv.FormatUint(resp.MemberID, 16), "initial-cluster", resp.InitialCluster)
	if err := c.startMember(ctx, embed.ClusterStateFlagExisting, resp.InitialCluster); err != nil {
		if admin, aerr := c.newAdminClient(resp.Endpoints); aerr == nil {
			rctx, cancel := c.reqCtx(context.Background())
			if _, rerr := admin.MemberRemove(rctx, resp.MemberID); rerr != nil {
				c.log.Warn("could not undo member add", "err", rerr)
			}
			cancel()
			admin.Close()
		}
		os.RemoveAll(o.DataDir)
		return err
	}
	return c.connectMember(ctx)
}

// voterClientURLs returns the client URLs of started voting members, those
// of member own first.
func voterClientURLs(ms []*etcdserverpb.Member, own string) []string {
	var first, rest []string
	for _, m := range ms {
		if m.Name == "" || m.IsLearner {
			continue
		}
		if m.Name == own {
			first = append(first, m.ClientURLs...)
		} else {
			rest = append(rest, m.ClientURLs...)
		}
	}
	return append(first, rest...)
}

// startMember starts the embedded etcd server and waits until it serves.
func (c *Cluster) startMember(ctx context.Context, state, initial string) error {
	o := c.opts
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("cluster: start etcd: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = o.NodeID
	cfg.Dir = o.DataDir
	peer, client := urlFor(o.AdvertiseAddr, o.PeerPort), urlFor(o.AdvertiseAddr, o.ClientPort)
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	setClientListeners(cfg, client, httpURLFor(o.ClientHTTPPort))
	cfg.InitialCluster = initial
	// Distinct per cluster: members of another cluster are refused.
	cfg.InitialClusterToken = "vxnet-" + c.id.ca.Digest()[:16]
	tlsInfo := transport.TLSInfo{
		CertFile:       c.id.dir.NodeCertPath(),
		KeyFile:        c.id.dir.NodeKeyPath(),
		TrustedCAFile:  c.id.dir.CACertPath(),
		ClientCertAuth: true,
	}
	if !benchPlaintext {
		cfg.ClientTLSInfo, cfg.PeerTLSInfo = tlsInfo, tlsInfo
	} else {
		c.log.Warn("benchmark build: embedded etcd links are plaintext, etcd authentication is off")
	}
	cfg.ClusterState = state
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "1h"
	cfg.MaxLearners = maxLearners
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newZapLogger(o.Logger, *o.EtcdLogLevel))
	var stopping atomic.Pointer[<-chan struct{}]
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{grpc.ChainStreamInterceptor(endStreamsOnStop(&stopping))}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("cluster: start etcd: %w", err)
	}
	for _, l := range e.Clients {
		c.log.Debug("embedded etcd client listener", "addr", l.Addr().String())
	}
	ch := e.Server.StoppingNotify()
	stopping.Store(&ch)
	c.etcd = e
	c.member = uint64(e.Server.MemberID())
	t := time.NewTimer(o.StartTimeout)
	defer t.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return nil
	case err := <-e.Err():
		return fmt.Errorf("cluster: start etcd: %w", err)
	case <-e.Server.StopNotify():
		return errors.New("cluster: start etcd: server stopped")
	case <-t.C:
		return unavailable("start etcd", fmt.Errorf("member not ready after %s (no quorum?)", o.StartTimeout))
	case <-ctx.Done():
		return unavailable("start etcd", ctx.Err())
	}
}

// endStreamsOnStop cancels the context of every gRPC stream (lease
// keepalives, watches) of the embedded server once the server stops on its
// own (this member was removed) or is being stopped. With authentication on,
// etcd checks permissions on each lease renewal by reading its backend, and a
// renewal still looping (forwarding to a leader) after the server closed its
// backend panics the whole process; a cancelled stream context ends that loop
// first. Streams opened before the server is known are left as they are.
func endStreamsOnStop(stopping *atomic.Pointer[<-chan struct{}]) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ch := stopping.Load()
		if ch == nil {
			return handler(srv, ss)
		}
		ctx, cancel := context.WithCancel(ss.Context())
		defer cancel()
		go func() {
			select {
			case <-*ch:
				cancel()
			case <-ctx.Done():
			}
		}()
		return handler(srv, ctxStream{ss, ctx})
	}
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// connectMember creates the clients of a host running a member: its own
// member once it votes, the voting members while it is a learner (a learner
// serves no writes). The membership loop keeps the endpoints right as the
// role changes (membership.go); the raft leader's loop promotes learners.
func (c *Cluster) connectMember(ctx context.Context) error {
	eps := c.memberEndpoints()
	if len(eps) == 0 {
		eps = []string{urlFor(c.opts.AdvertiseAddr, c.opts.ClientPort).String()}
	}
	var err error
	if c.cli, err = c.newClient(eps, false); err != nil {
		return err
	}
	if c.id.ca.Key != nil {
		if c.admin, err = c.newAdminClient(eps); err != nil {
			return err
		}
	}
	return nil
}

// roleOf returns this node's role from the member list.
func roleOf(ms []*etcdserverpb.Member, nodeID string) string {
	i := slices.IndexFunc(ms, func(m *etcdserverpb.Member) bool { return m.Name == nodeID })
	switch {
	case i < 0:
		return RoleClient
	case ms[i].IsLearner:
		return RoleLearner
	default:
		return RoleVoter
	}
}

// removeMember removes the etcd member named nodeID, if there is one. It
// refuses to remove the last member. etcd refuses membership changes for a
// few seconds after the previous one; removeMember waits for that.
func (c *Cluster) removeMember(ctx context.Context, nodeID string) error {
	deadline := time.Now().Add(c.opts.StartTimeout)
	lister := c.cli
	if c.admin != nil {
		lister = c.admin
	}
	for attempt := 0; ; attempt++ {
		rctx, cancel := c.reqCtx(ctx)
		ml, err := lister.MemberList(rctx)
		cancel()
		if err != nil {
			return unavailable("list members", err)
		}
		i := slices.IndexFunc(ml.Members, func(m *etcdserverpb.Member) bool { return m.Name == nodeID })
		if i < 0 {
			return nil
		}
		if len(ml.Members) == 1 {
			return errLastMember
		}
		// Ask the other members: a member removing itself may stop before
		// it answers.
		var others []string
		for _, m := range ml.Members {
			if m.ID != ml.Members[i].ID && !m.IsLearner {
				others = append(others, m.ClientURLs...)
			}
		}
		if len(others) == 0 {
			return unavailable("remove member", errors.New("no other voting member to ask"))
		}
		cli, err := c.newAdminClient(others)
		if err != nil {
			return err
		}
		rctx, cancel = c.reqCtx(ctx)
		_, err = cli.MemberRemove(rctx, ml.Members[i].ID)
		cancel()
		cli.Close()
		switch {
		case err == nil || errors.Is(err, rpctypes.ErrMemberNotFound):
			return nil
		case errors.Is(err, rpctypes.ErrUnhealthy) && time.Now().Before(deadline):
			if err := backoff(ctx, attempt); err != nil {
				return unavailable("remove member", err)
			}
		default:
			return unavailable("remove member", err)
		}
	}
}

var errLastMember = errors.New("last member")

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
