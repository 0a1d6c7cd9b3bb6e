package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/driver/overlay"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
	"github.com/vxnet/vxnet/internal/model"
)

func (c ClusterConfig) enabled() bool { return c.Store != "" || c.Init || c.Join != "" }

// wireCluster connects cluster mode (etcd, embedded or external) when its
// flags are given, and adds the overlay driver.
func wireCluster(ctx context.Context, cfg Config, eopts *engine.Options, drivers *[]driver.Driver, w *wired, log *slog.Logger) error {
	cc := cfg.Cluster
	if !cc.enabled() {
		return nil
	}
	n := 0
	for _, b := range []bool{cc.Store != "", cc.Init, cc.Join != ""} {
		if b {
			n++
		}
	}
	if n > 1 {
		return errors.New("--cluster-store, --cluster-init and --cluster-join are mutually exclusive")
	}
	if cc.Voters < 1 || cc.Voters%2 == 0 {
		return fmt.Errorf("invalid --cluster-voters %d: want an odd number", cc.Voters)
	}
	token, err := joinToken(cc)
	if err != nil {
		return err
	}
	if cc.VoterGrace <= 0 {
		return fmt.Errorf("invalid --cluster-voter-grace %s: want a positive duration", cc.VoterGrace)
	}
	if cc.IPAMGCInterval <= 0 {
		return fmt.Errorf("invalid --cluster-ipam-gc-interval %s: want a positive duration", cc.IPAMGCInterval)
	}
	if cc.IPAMGrace <= 0 {
		return fmt.Errorf("invalid --cluster-ipam-grace %s: want a positive duration", cc.IPAMGrace)
	}
	addr, err := advertiseAddr(cc.AdvertiseAddr)
	if err != nil {
		return err
	}
	nodeID, err := cluster.LoadOrCreateNodeID(cfg.DataRoot)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	opts := cluster.Options{
		NodeID: nodeID, Hostname: host, AdvertiseAddr: addr,
		CAFile: cc.StoreCA, CertFile: cc.StoreCert, KeyFile: cc.StoreKey,
		DataDir: filepath.Join(cfg.DataRoot, "etcd"), Init: cc.Init, Join: cc.Join,
		ClientPort: cc.ClientPort, ClientHTTPPort: cc.HTTPPort, PeerPort: cc.PeerPort, Voters: cc.Voters,
		JoinToken: token, JoinPort: cc.JoinPort, CertExpiry: cc.CertExpiry,
		VoterGrace: cc.VoterGrace, IPAMGCInterval: cc.IPAMGCInterval, IPAMGrace: cc.IPAMGrace,
		PKIDir: filepath.Join(cfg.DataRoot, "cluster"),
		Prefix: cc.Prefix, NodeTTL: cc.NodeTTL, Logger: log.With("component", "cluster"),
	}
	if cc.Store != "" && cc.StoreInsecure {
		log.Warn("--cluster-store-insecure: the cluster store is reached without TLS; anyone on the network path can read and rewrite every network, address and advertisement", "store", cc.Store)
	}
	if cc.Store != "" {
		eps, err := cluster.ParseStoreURL(cc.Store)
		if err != nil {
			return err
		}
		opts.Endpoints = eps
	}
	ov, err := overlay.New(overlay.Options{ExecRoot: cfg.ExecRoot, VTEP: addr, VXLANPort: cc.VXLANPort,
		Logger: log.With("component", "overlay")})
	if err != nil {
		return err
	}
	*drivers = append(*drivers, overlayDriver{ov})
	eopts.NodeID, eopts.VTEP, eopts.VXLANPort, eopts.ResyncInterval = nodeID, addr, cc.VXLANPort, cc.ResyncInterval
	eopts.OnLeave = cfg.onLeave
	if cc.Store == "" {
		// Containers must not reach the embedded store nor the join
		// service on this host's addresses.
		eopts.ControlPorts = append(eopts.ControlPorts, cc.ClientPort, cc.PeerPort, cc.JoinPort)
	}
	cl, err := cluster.Open(ctx, opts)
	switch {
	case err == nil:
		eopts.Cluster = cl
		w.closers = append(w.closers, func() { cl.Close() })
		log.Info("cluster mode", "node", nodeID, "advertise", addr)
	case errors.Is(err, model.ErrUnavailable):
		// Local networks and containers must not wait for the store:
		// start without it and attach it once it answers.
		log.Warn("cluster store unreachable; serving local networks, retrying in the background", "err", err)
		eopts.ClusterPending = true
		w.afterStart = append(w.afterStart, func(eng *engine.Engine) {
			retryCluster(ctx, opts, eng, w, log)
		})
	default:
		return fmt.Errorf("open cluster store: %w", err)
	}
	return nil
}

// joinToken reads --join-token or --join-token-file, which only go with
// --cluster-join.
func joinToken(cc ClusterConfig) (string, error) {
	if cc.JoinToken != "" && cc.JoinTokenFile != "" {
		return "", errors.New("--join-token and --join-token-file are mutually exclusive")
	}
	if (cc.JoinToken != "" || cc.JoinTokenFile != "") && cc.Join == "" {
		return "", errors.New("--join-token and --join-token-file go with --cluster-join")
	}
	if cc.JoinTokenFile == "" {
		return cc.JoinToken, nil
	}
	b, err := os.ReadFile(cc.JoinTokenFile)
	if err != nil {
		return "", fmt.Errorf("invalid --join-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("invalid --join-token-file %s: the file is empty", cc.JoinTokenFile)
	}
	return tok, nil
}

// retryCluster opens the cluster store in the background until it answers,
// then hands it to the engine.
func retryCluster(ctx context.Context, opts cluster.Options, eng *engine.Engine, w *wired, log *slog.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.mu.Lock()
	w.closers = append(w.closers, func() { cancel(); <-done })
	w.mu.Unlock()
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			cl, err := cluster.Open(ctx, opts)
			if err != nil {
				log.Debug("cluster store still unreachable", "err", err)
				continue
			}
			if ctx.Err() != nil {
				cl.Close()
				return
			}
			w.mu.Lock()
			w.closers = append(w.closers, func() { cl.Close() })
			w.mu.Unlock()
			eng.AttachCluster(cl)
			return
		}
	}()
}

// advertiseAddr resolves --advertise-addr (an IP or an interface name); by
// default the address of the interface holding the default route.
func advertiseAddr(s string) (netip.Addr, error) {
	if s != "" {
		if a, err := netip.ParseAddr(s); err == nil {
			return a, nil
		}
		l, err := netlink.LinkByName(s)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("invalid --advertise-addr %q: not an IP address or an interface", s)
		}
		return firstAddr(l)
	}
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			l, err := netlink.LinkByIndex(r.LinkIndex)
			if err != nil {
				continue
			}
			return firstAddr(l)
		}
	}
	return netip.Addr{}, errors.New("no default route: give --advertise-addr IP|IFACE")
}

// firstAddr is the first IPv4 address of l, else its first global IPv6
// address (an IPv6 underlay).
func firstAddr(l netlink.Link) (netip.Addr, error) {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err == nil && len(addrs) > 0 {
		a, _ := netip.AddrFromSlice(addrs[0].IP.To4())
		return a, nil
	}
	addrs, err = netlink.AddrList(l, netlink.FAMILY_V6)
	if err == nil {
		for _, x := range addrs {
			if a, ok := netip.AddrFromSlice(x.IP); ok && a.IsGlobalUnicast() && !a.Is4In6() {
				return a, nil
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 or global IPv6 address", l.Attrs().Name)
}

// overlayDriver presents the overlay driver's peer programming in the
// engine's terms (cluster advertisements in, FDB/neighbour text out).
type overlayDriver struct{ *overlay.Driver }

func (o overlayDriver) SetPeers(ctx context.Context, n model.Network, ads []engine.Peer) error {
	peers := make([]overlay.Peer, 0, len(ads))
	for _, a := range ads {
		peers = append(peers, overlay.Peer{IP: a.IP, IP6: a.IP6, MAC: net.HardwareAddr(a.MAC), VTEP: a.VTEP, NodeID: a.NodeID})
	}
	return o.Driver.SetPeers(ctx, n, peers)
}

func (o overlayDriver) ProgrammedEntries(ctx context.Context, n model.Network) (fdb, neigh []string, err error) {
	st, err := o.Driver.Programmed(ctx, n)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range st.FDB {
		fdb = append(fdb, f.MAC.String()+"@"+f.VTEP.String())
	}
	for _, x := range st.Neigh {
		neigh = append(neigh, x.IP.String()+"@"+x.MAC.String())
	}
	if !st.ProgrammingSince.IsZero() {
		return fdb, neigh, &peerctl.InProgress{Since: st.ProgrammingSince}
	}
	return fdb, neigh, nil
}

var _ engine.PeerSetter = overlayDriver{}

// checkStoreTLS refuses an external store reached in plain text over the
// network: anyone on the path could read and rewrite the whole cluster
// state. Loopback endpoints need no TLS; --cluster-store-insecure allows
// it elsewhere (wireCluster then warns at every start). TLS flags without
// an external store are refused, not ignored.
func checkStoreTLS(cc ClusterConfig) error {
	tls := cc.StoreCA != "" || cc.StoreCert != "" || cc.StoreKey != ""
	if cc.Store == "" {
		switch {
		case tls:
			return errors.New("--cluster-store-ca, --cluster-store-cert and --cluster-store-key belong to --cluster-store (an embedded cluster makes its own certificates)")
		case cc.StoreInsecure:
			return errors.New("--cluster-store-insecure needs --cluster-store")
		}
		return nil
	}
	if (cc.StoreCert == "") != (cc.StoreKey == "") {
		return errors.New("--cluster-store-cert and --cluster-store-key go together")
	}
	if tls && cc.StoreCA == "" {
		return errors.New("--cluster-store-cert and --cluster-store-key need --cluster-store-ca (the CA that signed the store's certificate)")
	}
	if tls && cc.StoreInsecure {
		return errors.New("--cluster-store-insecure contradicts --cluster-store-ca/--cluster-store-cert/--cluster-store-key: choose TLS or not")
	}
	eps, err := cluster.ParseStoreURL(cc.Store)
	if err != nil {
		return err
	}
	if tls || cc.StoreInsecure {
		return nil
	}
	for _, ep := range eps {
		host, _, _ := net.SplitHostPort(ep)
		if a, err := netip.ParseAddr(host); (err == nil && a.IsLoopback()) || host == "localhost" {
			continue
		}
		return fmt.Errorf("--cluster-store %s: %s is not a loopback address and the store would be reached without TLS; "+
			"give --cluster-store-ca, --cluster-store-cert and --cluster-store-key (or --cluster-store-insecure to accept the risk)", cc.Store, host)
	}
	return nil
}
