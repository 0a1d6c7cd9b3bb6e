package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
	"github.com/vxnet/vxnet/internal/store"
)

// External attachments: network namespaces made by another runtime (a CNI
// runtime, or Docker Engine through the network plugin) attached to a vxnet
// network. Each is an ordinary endpoint whose ContainerID is the
// attachment's ID, so everything that works from endpoints works for them:
// advertisement on overlays, the peer watch and reconciler, the dead-host
// purge on the other hosts, the VXLAN filter, drift repair, the names
// vxnet's containers resolve (embedded DNS) and `network inspect -v`. The attachment record
// (model.External, bucket store.Externals) is written before the endpoint
// and removed after it, so a crash never leaves an endpoint nobody owns.

var _ api.ExternalBackend = (*Engine)(nil)

// AttachExternal attaches a namespace, or re-plumbs an existing attachment
// with the same owner and key (idempotent, repairs a lost interface). The
// attachment's op lock serialises calls for one owner and key; the engine
// lock is held only to look up and commit (no I/O under it).
func (e *Engine) AttachExternal(ctx context.Context, req api.ExternalAttach) (api.ExternalView, error) {
	if err := checkExternalRequest(req); err != nil {
		return api.ExternalView{}, err
	}
	unlock := e.ctrOps.lock("external/" + req.Owner + "/" + req.Key)
	defer unlock()
	e.mu.Lock()
	n, err := e.attachableLocked(req.Network)
	if err != nil {
		e.mu.Unlock()
		return api.ExternalView{}, err
	}
	if n.Driver != "bridge" && n.Driver != "overlay" {
		e.mu.Unlock()
		return api.ExternalView{}, errf(model.ErrForbidden, "network %s has driver %s: only bridge and overlay networks take external attachments", n.Name, n.Driver)
	}
	if req.Owner == model.OwnerDocker && n.Driver != "overlay" {
		e.mu.Unlock()
		return api.ExternalView{}, errf(model.ErrForbidden, "network %s has driver %s: Docker attaches only to overlay networks", n.Name, n.Driver)
	}
	if err := e.checkEndpointRequest(n, api.EndpointRequest{IP: req.IP, IP6: req.IP6, Aliases: req.Aliases}); err != nil {
		e.mu.Unlock()
		return api.ExternalView{}, err
	}
	if x, ok := e.externalLocked(req.Owner, req.Key); ok {
		if x.NetworkID != n.ID {
			e.mu.Unlock()
			return api.ExternalView{}, errf(model.ErrConflict, "%s attachment %s is already on network %s", req.Owner, req.Key, e.networks[x.NetworkID].Name)
		}
		ep := e.endpoints[x.EndpointID]
		if x.NetnsPath != req.NetnsPath || (req.IP.IsValid() && req.IP != ep.Addr.Addr()) || (req.IP6.IsValid() && req.IP6 != ep.Addr6.Addr()) {
			e.mu.Unlock()
			return api.ExternalView{}, errf(model.ErrConflict, "%s attachment %s exists with another namespace or address", req.Owner, req.Key)
		}
		e.mu.Unlock()
		if x.NetnsPath != "" {
			ji := driver.JoinInfo{Sandbox: externalSandbox(x), DefaultRoute: givesDefaultRoute(n)}
			if err := e.drivers[n.Driver].Join(ctx, n, ep, ji); err != nil {
				return api.ExternalView{}, fmt.Errorf("re-plumb %s attachment %s: %w", req.Owner, req.Key, err)
			}
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.externalViewLocked(x), nil
	}
	for _, c := range e.containers {
		if c.Name == req.Name {
			e.mu.Unlock()
			return api.ExternalView{}, errf(model.ErrConflict, "the name %q is already in use by container %q", req.Name, c.ID)
		}
	}
	e.attaching[n.ID]++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.doneAttachingLocked(n.ID)
		e.mu.Unlock()
	}()
	x := model.External{ID: newID(), Owner: req.Owner, Key: req.Key, NetworkID: n.ID, NetnsPath: req.NetnsPath, IfName: req.IfName, SandboxKey: req.SandboxKey}
	sb := externalSandbox(x)
	staged := false
	if x.NetnsPath == "" {
		// Docker moves the interface itself: plumb it into a private
		// staging namespace, then hand it over in the host namespace with
		// no address, where dockerd finds it by name.
		sb.NetnsPath = e.stagingNetns()
		if err := e.createNetns(sb.NetnsPath); err != nil {
			return api.ExternalView{}, err
		}
		staged = true
	}
	// The endpoint carries the attachment's name, like a container's, so
	// it gets hosts entries and advertisements.
	pseudo := model.Container{ID: x.ID, Name: req.Name}
	bg := context.WithoutCancel(ctx)
	if req.Reserved {
		// The attach allocates the addresses again, as static ones.
		for _, a := range []netip.Addr{req.IP, req.IP6} {
			if a.IsValid() {
				e.release(ctx, n, a)
			}
		}
	}
	// giveBack returns the reservations to their owner after a failure.
	giveBack := func() {
		if !req.Reserved {
			return
		}
		if req.IP.IsValid() {
			e.allocate(bg, n, req.IP, "")
		}
		if req.IP6.IsValid() {
			e.allocate6(bg, n, req.IP6, "")
		}
	}
	ep, err := e.attachNamed(ctx, n, pseudo, sb, api.EndpointRequest{IP: req.IP, IP6: req.IP6, Aliases: req.Aliases}, 0, req.IfName, givesDefaultRoute(n))
	if err == nil && staged {
		if err = handOver(sb.NetnsPath, ep.IfName); err != nil {
			e.unplumb(bg, n, ep, sb)
		}
	}
	if err != nil {
		giveBack()
		return api.ExternalView{}, err
	}
	x.EndpointID = ep.ID
	// The attachment and its endpoint are recorded together, so a crash
	// never leaves an endpoint nobody owns.
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Externals, x.ID, x); err != nil {
			return err
		}
		if err := tx.Put(store.Endpoints, ep.ID, ep); err != nil {
			return err
		}
		if err := unholdTx(tx, n, ep); err != nil {
			return err
		}
		return e.saveIPAM(tx, n)
	})
	if err != nil {
		e.unplumb(bg, n, ep, sb)
		giveBack()
		return api.ExternalView{}, fmt.Errorf("record attachment: %w", err)
	}
	e.mu.Lock()
	e.endpoints[ep.ID] = ep
	e.externalsLocked()[x.ID] = x
	e.mu.Unlock()
	e.afterJoin(n, ep)
	e.syncDNS()
	e.log.Info("external namespace attached", "owner", x.Owner, "key", x.Key, "network", n.Name, "ip", ep.Addr, "ip6", ep.Addr6)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.externalViewLocked(x), nil
}

// handOver moves an interface from the staging namespace to the host
// namespace; the move drops its addresses and takes it down, as dockerd
// expects of the interface it moves into the container.
func handOver(stagingPath, ifName string) error {
	h, err := netns.Handle(stagingPath)
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s in staging namespace: %w", ifName, err)
	}
	host, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return err
	}
	defer host.Close()
	if err := h.LinkSetNsFd(l, int(host.Fd())); err != nil {
		return fmt.Errorf("move %s to the host namespace: %w", ifName, err)
	}
	return nil
}

// DetachExternal removes an attachment: its interface, address,
// advertisement and record. A missing attachment is success.
func (e *Engine) DetachExternal(ctx context.Context, owner, key string) error {
	unlock := e.ctrOps.lock("external/" + owner + "/" + key)
	defer unlock()
	e.mu.Lock()
	x, ok := e.externalLocked(owner, key)
	e.mu.Unlock()
	if !ok {
		return nil
	}
	return e.detachExternal(ctx, x)
}

func (e *Engine) detachExternal(ctx context.Context, x model.External) error {
	e.mu.Lock()
	ep, ok := e.endpoints[x.EndpointID]
	e.mu.Unlock()
	if ok {
		if err := e.detach(ctx, ep, externalSandbox(x)); err != nil {
			return err
		}
	}
	if err := e.opts.Store.Delete(store.Externals, x.ID); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.externalsLocked(), x.ID)
	e.mu.Unlock()
	e.syncDNS()
	e.log.Info("external namespace detached", "owner", x.Owner, "key", x.Key)
	return nil
}

// CheckExternal verifies that the attachment's interface exists in its
// namespace as a veth with the endpoint's MAC and address.
func (e *Engine) CheckExternal(ctx context.Context, owner, key string) (api.ExternalView, error) {
	e.mu.Lock()
	x, ok := e.externalLocked(owner, key)
	var v api.ExternalView
	if ok {
		v = e.externalViewLocked(x)
	}
	e.mu.Unlock()
	if !ok {
		return api.ExternalView{}, errf(model.ErrNotFound, "no %s attachment %s", owner, key)
	}
	if x.NetnsPath == "" || e.opts.noNetns {
		return v, nil
	}
	h, err := netns.Handle(x.NetnsPath)
	if err != nil {
		return v, errf(model.ErrNotFound, "namespace %s of attachment %s: %v", x.NetnsPath, key, err)
	}
	defer h.Close()
	l, err := h.LinkByName(x.IfName)
	if err != nil {
		return v, errf(model.ErrNotFound, "interface %s of attachment %s is gone", x.IfName, key)
	}
	if l.Type() != "veth" || l.Attrs().HardwareAddr.String() != v.Endpoint.MAC.String() {
		return v, errf(model.ErrConflict, "interface %s of attachment %s is not vxnet's veth (type %s, MAC %s)", x.IfName, key, l.Type(), l.Attrs().HardwareAddr)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return v, err
	}
	// Both addresses of a dual-stack endpoint must be there (an
	// IPv6-only endpoint has only Addr6).
	for _, want := range []netip.Prefix{v.Endpoint.Addr, v.Endpoint.Addr6} {
		if !want.IsValid() {
			continue
		}
		found := false
		for _, a := range addrs {
			if a.IPNet.String() == want.String() {
				found = true
				break
			}
		}
		if !found {
			return v, errf(model.ErrConflict, "interface %s of attachment %s lost its address %s", x.IfName, key, want)
		}
	}
	return v, nil
}

// ListExternal lists attachments of one owner ("" for all), by key.
func (e *Engine) ListExternal(ctx context.Context, owner string) ([]api.ExternalView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []api.ExternalView
	for _, x := range e.externalsLocked() {
		if owner == "" || x.Owner == owner {
			out = append(out, e.externalViewLocked(x))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].External.Key < out[j].External.Key })
	return out, nil
}

func (e *Engine) externalsLocked() map[string]model.External {
	if e.externals == nil {
		e.externals = map[string]model.External{}
	}
	return e.externals
}

func (e *Engine) externalLocked(owner, key string) (model.External, bool) {
	for _, x := range e.externalsLocked() {
		if x.Owner == owner && x.Key == key {
			return x, true
		}
	}
	return model.External{}, false
}

func (e *Engine) externalViewLocked(x model.External) api.ExternalView {
	n := e.networks[x.NetworkID]
	ep := e.endpoints[x.EndpointID]
	v := api.ExternalView{External: x, Endpoint: ep, Network: n, DefaultRoute: x.NetnsPath != "" && givesDefaultRoute(n)}
	if n.Driver == "bridge" {
		v.HostVeth = bridge.HostVethName(ep.ID)
	}
	return v
}

func externalSandbox(x model.External) model.Sandbox {
	return model.Sandbox{ID: x.ID, ContainerID: x.ID, NetnsPath: x.NetnsPath}
}

// stagingNetns is where interfaces for Docker are made before the hand-over.
func (e *Engine) stagingNetns() string { return filepath.Join(e.opts.ExecRoot, "plugin-staging") }

// checkExternalRequest validates what a runtime sent.
func checkExternalRequest(req api.ExternalAttach) error {
	switch req.Owner {
	case model.OwnerCNI:
		if !filepath.IsAbs(req.NetnsPath) {
			return errf(model.ErrInvalid, "netns path %q must be absolute", req.NetnsPath)
		}
		if req.SandboxKey != "" {
			return errf(model.ErrInvalid, "CNI attachments take no sandbox key")
		}
	case model.OwnerDocker:
		if req.NetnsPath != "" {
			return errf(model.ErrInvalid, "Docker attachments take no netns path")
		}
		if req.SandboxKey != "" && !filepath.IsAbs(req.SandboxKey) {
			return errf(model.ErrInvalid, "sandbox key %q must be absolute", req.SandboxKey)
		}
	default:
		return errf(model.ErrInvalid, "unknown attachment owner %q (want %s or %s)", req.Owner, model.OwnerCNI, model.OwnerDocker)
	}
	if req.Key == "" {
		return errf(model.ErrInvalid, "attachment key must not be empty")
	}
	if req.Network == "" {
		return errf(model.ErrInvalid, "network must not be empty")
	}
	if len(req.IfName) == 0 || len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/: \t\n") || req.IfName == "." || req.IfName == ".." {
		return errf(model.ErrInvalid, "invalid interface name %q", req.IfName)
	}
	if req.IP6.IsValid() && (!req.IP6.Is6() || req.IP6.Is4In6()) {
		return errf(model.ErrInvalid, "invalid IPv6 address: %s", req.IP6)
	}
	if !validName.MatchString(req.Name) {
		return errf(model.ErrInvalid, "invalid attachment name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", req.Name)
	}
	return nil
}

// restoreExternals loads the attachments at start, drops records whose
// endpoint never got written (a crash mid-attach), and re-plumbs CNI
// attachments whose namespace still exists (drift repair: a lost interface
// comes back). Docker's interfaces live in its containers and are left
// alone.
func (e *Engine) restoreExternals(ctx context.Context, xs []model.External) error {
	var errs []error
	for _, x := range xs {
		e.mu.Lock()
		ep, ok := e.endpoints[x.EndpointID]
		var stray []model.Endpoint
		if !ok {
			for _, o := range e.endpoints {
				if o.ContainerID == x.ID {
					stray = append(stray, o)
				}
			}
		}
		n, nok := e.networks[x.NetworkID]
		e.mu.Unlock()
		if !ok {
			for _, o := range stray {
				errs = append(errs, e.detach(ctx, o, externalSandbox(x)))
			}
			if err := e.opts.Store.Delete(store.Externals, x.ID); err != nil {
				errs = append(errs, fmt.Errorf("drop attachment record: %w", err))
			}
			continue
		}
		e.mu.Lock()
		e.externalsLocked()[x.ID] = x
		e.mu.Unlock()
		if !nok || x.NetnsPath == "" || !e.netnsPinned(x.NetnsPath) {
			continue
		}
		ji := driver.JoinInfo{Sandbox: externalSandbox(x), DefaultRoute: givesDefaultRoute(n)}
		if err := e.drivers[n.Driver].Join(ctx, n, ep, ji); err != nil {
			errs = append(errs, fmt.Errorf("restore %s attachment %s: %w", x.Owner, x.Key, err))
		}
	}
	return errors.Join(errs...)
}

// ReserveAddress reserves an address on a network without an endpoint
// (Docker's IpamDriver.RequestAddress): an IPv6 one when v6 is set (the
// network must have IPv6), else an IPv4 one (the network must have IPv4);
// a zero ip picks one. The holder either hands it to AttachExternal
// (Reserved) or releases it.
func (e *Engine) ReserveAddress(ctx context.Context, netRef string, ip netip.Addr, v6 bool) (netip.Prefix, error) {
	e.mu.Lock()
	n, err := e.networkLocked(netRef)
	e.mu.Unlock()
	if err != nil {
		return netip.Prefix{}, err
	}
	if n.Scope != model.ScopeGlobal {
		return netip.Prefix{}, errf(model.ErrForbidden, "network %s is not a cluster network: addresses are reserved only on overlay networks", n.Name)
	}
	if ip.IsValid() && ip.Is6() != v6 {
		return netip.Prefix{}, errf(model.ErrInvalid, "address %s is not of the pool's family", ip)
	}
	if v6 {
		if !n.EnableIPv6 {
			return netip.Prefix{}, errf(model.ErrInvalid, "network %s does not have IPv6 enabled", n.Name)
		}
		return e.allocate6(ctx, n, ip, "")
	}
	if n.DisableIPv4 {
		return netip.Prefix{}, errf(model.ErrInvalid, "network %s does not have IPv4 enabled", n.Name)
	}
	return e.allocate(ctx, n, ip, "")
}

// ReleaseAddress gives back an address reserved with ReserveAddress.
func (e *Engine) ReleaseAddress(ctx context.Context, netRef string, ip netip.Addr) error {
	e.mu.Lock()
	n, err := e.networkLocked(netRef)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.release(ctx, n, ip)
}
