package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Every container operation follows the same shape: resolve and reserve
// under mu (names, in-flight attaches), do the I/O (netns, drivers,
// allocation, runtime, store) unlocked under the container's op lock, and
// commit to memory under mu only after the local store write succeeded.
// A container, its sandbox and its endpoints are written in one bbolt
// transaction; on removal they are deleted locally before anything is
// released globally, so a crash in between leaks at most an address this
// node owns (swept at start), never gives one address to two containers.

// CreateContainer records a container, makes its sandbox (a pinned network
// namespace), reserves its address and plumbs its first network, so the
// address survives restarts. Nothing is left behind on failure.
func (e *Engine) CreateContainer(ctx context.Context, req api.ContainerCreate) (model.Container, error) {
	img, err := e.opts.Images.Get(req.Image)
	if err != nil {
		return model.Container{}, classify(err, model.ErrNotFound)
	}
	cmd, run := mergeImageConfig(req, img)
	if len(run.Entrypoint) == 0 && len(cmd) == 0 {
		return model.Container{}, errf(model.ErrInvalid, "no command specified")
	}
	for _, kv := range req.Env {
		if kv == "" || strings.HasPrefix(kv, "=") {
			return model.Container{}, errf(model.ErrInvalid, "invalid environment variable: %q", kv)
		}
	}
	if req.Name != "" && !validName.MatchString(strings.TrimPrefix(req.Name, "/")) {
		return model.Container{}, errf(model.ErrInvalid, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", req.Name)
	}
	if err := checkResolvSettings(req); err != nil {
		return model.Container{}, err
	}
	netRef := req.Network
	if netRef == "" || netRef == "default" {
		netRef = model.NetBridge
	}

	// Reserve: the name and an in-flight attach on the network.
	e.mu.Lock()
	name := strings.TrimPrefix(req.Name, "/")
	taken := func(s string) (string, bool) {
		for _, c := range e.containers {
			if c.Name == s {
				return c.ID, true
			}
		}
		return "", e.pendingNames[s]
	}
	if name == "" {
		name = randomName(func(s string) bool { _, t := taken(s); return t })
	} else if other, t := taken(name); t {
		e.mu.Unlock()
		return model.Container{}, errf(model.ErrConflict, "Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+name, other)
	}
	n, err := e.attachableLocked(netRef)
	if errors.Is(err, model.ErrNotFound) {
		// Not 404: the docker CLI takes a 404 from create for a missing
		// image and would try to pull it.
		err = errf(model.ErrInvalid, "network %s not found", netRef)
	}
	if err == nil {
		err = e.checkEndpointRequest(n, req.Endpoint)
	}
	if err == nil {
		err = createEndpointErr(netRef, n, req.Endpoint)
	}
	var exposed []model.Port
	if err == nil {
		exposed, err = checkExposure(n, req, img.ExposedPorts)
	}
	var links []string
	if err == nil {
		links, err = e.checkLinksLocked(n, req.Links)
	}
	var extra []model.Network
	if err == nil {
		extra, err = e.checkExtraNetworksLocked(n, req)
	}
	if err != nil {
		e.mu.Unlock()
		return model.Container{}, err
	}
	for _, x := range extra {
		e.attaching[x.ID]++
	}
	e.pendingNames[name] = true
	e.attaching[n.ID]++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pendingNames, name)
		e.doneAttachingLocked(n.ID)
		e.mu.Unlock()
	}()

	id := newID()
	hostname := req.Hostname
	if hostname == "" {
		hostname = id[:12]
	}
	if (n.Driver == "host" || req.Run.UTSMode == "host") && req.Hostname == "" {
		hostname, _ = os.Hostname()
	}
	c := model.Container{
		ID: id, Name: name, Image: req.Image, ImageID: img.ID, Cmd: cmd, Env: req.Env, Hostname: hostname,
		Created: e.now(), AutoRemove: req.AutoRemove, NetworkMode: n.Name, State: model.StateCreated,
		ExposedPorts: exposed, PortBindings: req.PortBindings, PublishAll: req.PublishAll,
		DNS: req.DNS, DNSSearch: req.DNSSearch, DNSOptions: req.DNSOptions, Links: links, ExtraHosts: req.ExtraHosts,
		Tty: req.Tty, OpenStdin: req.OpenStdin, StdinOnce: req.StdinOnce, Run: run, RestartPolicy: req.RestartPolicy,
	}
	sb := model.Sandbox{ID: id, ContainerID: id}
	if n.Driver == "host" {
		sb.HostNetwork = true
	} else {
		sb.NetnsPath = filepath.Join(e.netnsDir(), id[:12])
	}

	// Undo list, run in reverse on failure.
	var undo []func()
	fail := func(err error) (model.Container, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return model.Container{}, err
	}
	bg := context.WithoutCancel(ctx)
	if sb.NetnsPath != "" {
		if err := e.createNetns(sb.NetnsPath); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { e.deleteNetns(sb.NetnsPath) })
	}
	if reqMounts := withImageVolumes(req.Mounts, img.Volumes); len(reqMounts) > 0 {
		ms, undoMounts, doneMounts, err := e.resolveMounts(reqMounts)
		if err != nil {
			return fail(err)
		}
		defer doneMounts()
		undo = append(undo, undoMounts)
		c.Mounts = ms
	}
	if err := e.writeSandboxFiles(sandboxFiles{c: c, sb: sb}); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { os.RemoveAll(filepath.Join(e.filesDir(), id)) })
	var eps []model.Endpoint
	// The gateway bridge interface has IPv6 if any of the overlay networks
	// with a way out has it, whichever comes first.
	want6 := egress6(n)
	for _, xn := range extra {
		want6 = want6 || egress6(xn)
	}
	// join attaches the container to n (and, if n needs one, to the
	// gateway network), recording both for undo. The caller defers the
	// returned gateway's done.
	join := func(n model.Network, r api.EndpointRequest, order int, defaultRoute bool) (*gwAttach, error) {
		ep, err := e.attach(ctx, n, c, sb, r, order, defaultRoute)
		if err != nil {
			return nil, err
		}
		eps = append(eps, ep)
		undo = append(undo, func() { e.unplumb(bg, n, ep, sb) })
		gw, err := e.gatewayEndpoint(ctx, n, c, sb, eps, want6)
		if err != nil {
			return nil, err
		}
		if gw != nil {
			eps = append(eps, gw.ep)
			undo = append(undo, func() { e.unplumb(bg, gw.n, gw.ep, sb) })
		}
		return gw, nil
	}
	if n.Driver == "bridge" || n.Driver == "overlay" || n.Driver == "macvlan" {
		gw, err := join(n, req.Endpoint, 0, givesDefaultRoute(n))
		if err != nil {
			return fail(err)
		}
		if gw != nil {
			defer gw.done()
		}
	}
	// More networks (several EndpointsConfig entries), each on the next
	// interface; the default route goes by GwPriority.
	for i, xn := range extra {
		defer func() {
			e.mu.Lock()
			e.doneAttachingLocked(xn.ID)
			e.mu.Unlock()
		}()
		r := req.Extra[i].Endpoint
		order := 0
		for _, ep := range eps {
			order = max(order, ep.Order+1)
		}
		gw, err := join(xn, r, order, e.wantsDefaultRoute(xn, r.GwPriority, eps))
		if err != nil {
			return fail(err)
		}
		if gw != nil {
			defer gw.done()
		}
	}
	e.crashPoint(CrashCreateAfterJoin)
	spec := ContainerSpec{ID: id, Image: img.ID, Args: append(slices.Clone(run.Entrypoint), cmd...), Env: req.Env, Hostname: hostname,
		NetnsPath: sb.NetnsPath, Mounts: append(e.mounts(id), runtimeMounts(c.Mounts)...), Tty: req.Tty, Stdin: req.OpenStdin,
		ConsoleSize: req.ConsoleSize, Run: run}
	if err := e.opts.Runtime.Create(ctx, spec); err != nil {
		if errors.Is(err, model.ErrInvalid) {
			return fail(err) // an option the runtime refused, in its words
		}
		return fail(fmt.Errorf("create container: %w", err))
	}
	undo = append(undo, func() { e.opts.Runtime.Delete(bg, id) })
	if err := e.copyUp(ctx, id, c.Mounts); err != nil {
		return fail(fmt.Errorf("copy the image's content into a volume: %w", err))
	}
	e.crashPoint(CrashCreateAfterRuntime)
	nets := e.networksOf(eps)
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Containers, id, c); err != nil {
			return err
		}
		if err := tx.Put(store.Sandboxes, id, sb); err != nil {
			return err
		}
		for _, ep := range eps {
			if err := tx.Put(store.Endpoints, ep.ID, ep); err != nil {
				return err
			}
			if err := unholdTx(tx, nets[ep.NetworkID], ep); err != nil {
				return err
			}
			if err := e.saveIPAM(tx, nets[ep.NetworkID]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fail(fmt.Errorf("record container: %w", err))
	}
	e.mu.Lock()
	e.containers[id] = c
	e.sandboxes[id] = sb
	for _, ep := range eps {
		e.endpoints[ep.ID] = ep
	}
	e.mu.Unlock()
	e.crashPoint(CrashCreateAfterCommit)
	for _, ep := range eps {
		e.afterJoin(nets[ep.NetworkID], ep)
	}
	e.namesChanged(id)
	e.log.Info("container created", "name", name, "id", id[:12], "network", n.Name)
	e.containerEvent(c, events.ActionCreate, nil)
	for _, ep := range eps {
		e.networkEvent(nets[ep.NetworkID], events.ActionConnect, id)
	}
	return c, nil
}

// mergeImageConfig completes a create request with the image's config as
// Docker does: the request's entrypoint, else the image's; the image's Cmd
// only when the request sets neither Cmd nor Entrypoint; an entrypoint of
// [""] (--entrypoint "") clears both. User, WorkingDir and StopSignal
// default to the image's, labels are the image's overridden by the
// request's.
func mergeImageConfig(req api.ContainerCreate, img ImageInfo) ([]string, model.RunConfig) {
	run := req.Run
	cmd := slices.Clone(req.Cmd)
	if len(run.Entrypoint) == 0 {
		if len(cmd) == 0 {
			cmd = slices.Clone(img.Cmd)
		}
		if run.Entrypoint == nil {
			run.Entrypoint = slices.Clone(img.Entrypoint)
		}
	}
	if len(run.Entrypoint) == 1 && run.Entrypoint[0] == "" {
		run.Entrypoint = nil
	}
	if run.User == "" {
		run.User = img.User
	}
	if run.WorkingDir == "" {
		run.WorkingDir = img.WorkingDir
	}
	if run.StopSignal == "" {
		run.StopSignal = img.StopSignal
	}
	if len(img.Labels) > 0 {
		labels := maps.Clone(img.Labels)
		maps.Copy(labels, run.Labels)
		run.Labels = labels
	}
	return cmd, run
}

// checkExtraNetworksLocked resolves the networks of a create beyond the
// first and applies connect's rules to each.
func (e *Engine) checkExtraNetworksLocked(first model.Network, req api.ContainerCreate) ([]model.Network, error) {
	if len(req.Extra) == 0 {
		return nil, nil
	}
	if first.Driver == "host" || first.Driver == "null" {
		return nil, errf(model.ErrInvalid, "conflicting options: cannot attach both user-defined and non-user-defined network-modes")
	}
	seen := map[string]bool{first.ID: true}
	var out []model.Network
	for _, x := range req.Extra {
		n, err := e.attachableLocked(x.Network)
		if errors.Is(err, model.ErrNotFound) {
			err = errf(model.ErrInvalid, "network %s not found", x.Network)
		}
		if err != nil {
			return nil, err
		}
		switch {
		case n.Driver == "host" || n.Driver == "null":
			return nil, errf(model.ErrInvalid, "conflicting options: cannot attach both user-defined and non-user-defined network-modes")
		case seen[n.ID]:
			return nil, errf(model.ErrInvalid, "network %s is given twice", n.Name)
		}
		seen[n.ID] = true
		if err := e.checkEndpointRequest(n, x.Endpoint); err != nil {
			return nil, err
		}
		if err := createEndpointErr(x.Network, n, x.Endpoint); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// attachableLocked resolves a network that may take a new endpoint: not
// being removed.
func (e *Engine) attachableLocked(ref string) (model.Network, error) {
	n, err := e.networkLocked(ref)
	if err != nil {
		return n, err
	}
	if e.removingNets[n.ID] {
		return model.Network{}, errf(model.ErrNotFound, "network %s not found", ref)
	}
	return n, nil
}

func (e *Engine) doneAttachingLocked(netID string) {
	if e.attaching[netID]--; e.attaching[netID] <= 0 {
		delete(e.attaching, netID)
		// A removal that saw this attach in flight left the peer watch
		// to it: if the attach failed, nothing local is left to watch for.
		e.unwatchIfIdleLocked(netID)
	}
}

// networksOf returns the current networks of endpoints, by ID.
func (e *Engine) networksOf(eps []model.Endpoint) map[string]model.Network {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]model.Network{}
	for _, ep := range eps {
		if n, ok := e.networks[ep.NetworkID]; ok {
			out[n.ID] = n
		}
	}
	return out
}

// checkEndpointRequest applies Docker's rules for --ip and --alias.
func (e *Engine) checkEndpointRequest(n model.Network, r api.EndpointRequest) error {
	userDefined := !n.Predefined
	if r.IP.IsValid() {
		if !userDefined {
			return errf(model.ErrInvalid, "user specified IP address is supported on user defined networks only")
		}
		if !r.IP.Is4() {
			return errf(model.ErrInvalid, "invalid IPv4 address: %s", r.IP)
		}
	}
	if len(r.Aliases) > 0 && !userDefined {
		return errf(model.ErrInvalid, "network-scoped alias is supported only for containers in user defined networks")
	}
	for _, a := range r.Aliases {
		if !validName.MatchString(a) {
			return errf(model.ErrInvalid, "invalid alias %q", a)
		}
	}
	if r.IfName != "" && (!validIfName.MatchString(r.IfName) || r.IfName == "lo") {
		return errf(model.ErrInvalid, "invalid interface name %q in %s: 1 to 15 of [a-zA-Z0-9_.-]", r.IfName, model.OptEndpointIfName)
	}
	if len(r.MAC) != 0 && (len(r.MAC) != 6 || r.MAC[0]&1 != 0) {
		return errf(model.ErrInvalid, "invalid MAC address: %s", r.MAC)
	}
	for _, a := range r.LinkLocalIPs {
		if !a.IsLinkLocalUnicast() {
			return errf(model.ErrInvalid, "invalid link-local IP address: %s", a)
		}
	}
	return nil
}

// staticAddrsProblem applies Docker 28's rule for static addresses (moby's
// EndpointIPAMConfig.IsInRange, part of validateEndpointSettings): --ip and
// --ip6 must lie in a subnet of their family the user configured (in its
// --ip-range if it has one); a network whose subnets of that family all
// came from a default pool takes none. It returns Docker's text of the
// problems ("" if none), for the caller to wrap as Docker does: "invalid
// endpoint settings:\n" on connect, with "invalid config for network N: "
// before it on create. A family the network lacks is left to attach, which
// names it. Only the Docker API's create and connect apply it; external
// attachments (CNI, Docker's plugin) take their address from elsewhere.
func staticAddrsProblem(n model.Network, r api.EndpointRequest) string {
	var probs []string
	check := func(a netip.Addr, six bool) {
		if !a.IsValid() {
			return
		}
		configured := false
		for _, c := range n.IPAM {
			if !c.Subnet.IsValid() || c.Subnet.Addr().Is6() != six || c.Auto {
				continue
			}
			configured = true
			in := c.Subnet
			if c.IPRange.IsValid() {
				in = c.IPRange
			}
			if in.Contains(a) {
				return
			}
		}
		if configured {
			probs = append(probs, fmt.Sprintf("no configured subnet or ip-range contain the IP address %s", a))
		} else {
			probs = append(probs, "user specified IP address is supported only when connecting to networks with user configured subnets")
		}
	}
	if !n.DisableIPv4 {
		check(r.IP, false)
	}
	if n.EnableIPv6 {
		check(r.IP6, true)
	}
	if len(probs) == 1 {
		return probs[0]
	}
	if len(probs) > 1 {
		// moby's multierror.Join
		return "* " + strings.Join(probs, "\n* ")
	}
	return ""
}

// createEndpointErr is staticAddrsProblem as container create words it:
// ref is the network as the request named it (Docker's EndpointsConfig key).
func createEndpointErr(ref string, n model.Network, r api.EndpointRequest) error {
	if p := staticAddrsProblem(n, r); p != "" {
		return errLines(model.ErrInvalid, "invalid config for network %s: invalid endpoint settings:\n%s", ref, p)
	}
	return nil
}

// validIfName: an interface name the kernel takes (IFNAMSIZ).
var validIfName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// attach reserves an address on n and plumbs the endpoint into the
// sandbox; it records nothing (the caller writes the endpoint in its own
// transaction, then commits it to memory). order is the interface index
// (eth<order>). On failure nothing is left.
func (e *Engine) attach(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox, r api.EndpointRequest, order int, defaultRoute bool) (model.Endpoint, error) {
	ifName := fmt.Sprintf("eth%d", order)
	if r.IfName != "" {
		ifName = r.IfName
	}
	return e.attachNamed(ctx, n, c, sb, r, order, ifName, defaultRoute)
}

// attachNamed is attach with the interface name given.
func (e *Engine) attachNamed(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox, r api.EndpointRequest, order int, ifName string, defaultRoute bool) (model.Endpoint, error) {
	id := newID()
	ep := model.Endpoint{
		ID: id, NetworkID: n.ID, ContainerID: c.ID, Name: c.Name,
		Aliases: r.Aliases, StaticIP: r.IP.IsValid(),
		IfName: ifName, Order: order, GwPriority: r.GwPriority, LinkLocalIPs: r.LinkLocalIPs,
		IfNameStatic: r.IfName != "",
	}
	// undo gives back what was allocated so far.
	undo := func() {
		for _, a := range epAddrs(ep) {
			e.release(context.WithoutCancel(ctx), n, a)
		}
	}
	if n.DisableIPv4 {
		if r.IP.IsValid() {
			return model.Endpoint{}, errf(model.ErrInvalid, "invalid IPv4 address %s: network %s does not have IPv4 enabled", r.IP, n.Name)
		}
	} else {
		addr, err := e.allocate(ctx, n, r.IP, id)
		if err != nil {
			return model.Endpoint{}, err
		}
		ep.Addr = addr
		for _, cfg := range n.IPAM {
			if cfg.Subnet.Contains(addr.Addr()) {
				ep.Gateway = cfg.Gateway
			}
		}
	}
	if r.IP6.IsValid() && !n.EnableIPv6 {
		undo()
		return model.Endpoint{}, errf(model.ErrInvalid, "invalid IPv6 address %s: network %s does not have IPv6 enabled", r.IP6, n.Name)
	}
	if n.EnableIPv6 {
		p6, err := e.allocate6(ctx, n, r.IP6, id)
		if err != nil {
			undo()
			return model.Endpoint{}, err
		}
		ep.Addr6, ep.StaticIP6 = p6, r.IP6.IsValid()
		for _, cfg := range n.IPAM {
			if cfg.Subnet.Contains(p6.Addr()) {
				ep.Gateway6 = cfg.Gateway
			}
		}
	}
	if len(r.MAC) == 6 {
		ep.MAC, ep.MACStatic = slices.Clone(r.MAC), true
	} else if ep.Addr.IsValid() {
		ep.MAC = model.MACForIP(ep.Addr.Addr())
	} else {
		ep.MAC = model.MACForIP(ep.Addr6.Addr())
	}
	if n.Scope == model.ScopeGlobal {
		var held []netip.Addr
		for _, a := range epAddrs(ep) {
			if err := e.hold(n, a); err != nil {
				for _, h := range held {
					e.releaseHeld(context.WithoutCancel(ctx), n, h)
				}
				undo()
				return model.Endpoint{}, err
			}
			held = append(held, a)
		}
	}
	ep.MTU = e.mtuFor(ctx, n)
	d := e.drivers[n.Driver]
	if err := d.Join(ctx, n, ep, driver.JoinInfo{Sandbox: sb, DefaultRoute: defaultRoute}); err != nil {
		e.unplumb(context.WithoutCancel(ctx), n, ep, sb)
		return model.Endpoint{}, fmt.Errorf("join %s to network %s: %w", c.Name, n.Name, err)
	}
	return ep, nil
}

// unplumb undoes attach for an endpoint that was never recorded.
func (e *Engine) unplumb(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) {
	if err := e.drivers[n.Driver].Leave(ctx, n, ep, sb); err != nil {
		e.log.Warn("undo join", "network", n.Name, "err", err)
	}
	for _, a := range epAddrs(ep) {
		if n.Scope == model.ScopeGlobal {
			e.releaseHeld(ctx, n, a)
		} else {
			e.release(ctx, n, a)
		}
	}
}

// wantsDefaultRoute: a new endpoint on n with priority prio takes the
// sandbox's default route from the endpoints it has (Docker's rule: the
// highest GwPriority among networks with a gateway and a way out; ties go
// to the network name that sorts first).
func (e *Engine) wantsDefaultRoute(n model.Network, prio int, have []model.Endpoint) bool {
	if !givesDefaultRoute(n) {
		return false
	}
	nets := e.networksOf(have)
	for _, ep := range have {
		if o := nets[ep.NetworkID]; givesDefaultRoute(o) && !routeBeats(prio, n.Name, ep.GwPriority, o.Name) {
			return false
		}
	}
	return true
}

// routeBeats: an endpoint (prio a on network an) is preferred for the
// default route over one with prio b on network bn.
func routeBeats(a int, an string, b int, bn string) bool {
	if a != b {
		return a > b
	}
	return an < bn
}

// defaultRouteEndpoint is the ID of the endpoint among eps that gives the
// default route ("" if none can).
func defaultRouteEndpoint(eps []model.Endpoint, nets map[string]model.Network) string {
	var best *model.Endpoint
	for i := range eps {
		n, ok := nets[eps[i].NetworkID]
		if !ok || !givesDefaultRoute(n) {
			continue
		}
		if best == nil || routeBeats(eps[i].GwPriority, n.Name, best.GwPriority, nets[best.NetworkID].Name) {
			best = &eps[i]
		}
	}
	if best == nil {
		return ""
	}
	return best.ID
}

// givesDefaultRoute: networks whose gateway can be a container's way out.
// Overlay networks route out through the gateway bridge instead (Docker).
func givesDefaultRoute(n model.Network) bool {
	return !n.Internal && n.Driver != "overlay" && hasGateway(n)
}

func hasGateway(n model.Network) bool {
	for _, c := range n.IPAM {
		if c.Gateway.IsValid() {
			return true
		}
	}
	return false
}

// detach removes one recorded endpoint: it leaves the driver, deletes the
// record, forgets it, and only then withdraws and releases its address.
func (e *Engine) detach(ctx context.Context, ep model.Endpoint, sb model.Sandbox) error {
	e.mu.Lock()
	n, ok := e.networks[ep.NetworkID]
	e.mu.Unlock()
	if ok {
		if err := e.drivers[n.Driver].Leave(ctx, n, ep, sb); err != nil {
			return fmt.Errorf("leave network %s: %w", n.Name, err)
		}
	}
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Endpoints, ep.ID); err != nil {
			return err
		}
		return holdTx(tx, n, ep)
	})
	if err != nil {
		return fmt.Errorf("delete endpoint record: %w", err)
	}
	e.mu.Lock()
	delete(e.endpoints, ep.ID)
	e.mu.Unlock()
	if ok {
		e.released(ctx, n, []model.Endpoint{ep})
	}
	return nil
}

// released withdraws and frees the addresses of endpoints of n that are
// already gone from the store and the view.
func (e *Engine) released(ctx context.Context, n model.Network, eps []model.Endpoint) {
	ctx = context.WithoutCancel(ctx)
	for _, ep := range eps {
		e.beforeRelease(ctx, n, ep)
		for _, a := range epAddrs(ep) {
			if n.Scope == model.ScopeGlobal {
				e.releaseHeld(ctx, n, a)
			} else {
				e.release(ctx, n, a)
			}
		}
	}
	if n.Scope == model.ScopeLocal {
		if err := e.opts.Store.Update(func(tx *store.Tx) error { return e.saveIPAM(tx, n) }); err != nil {
			e.log.Warn("save address state", "network", n.Name, "err", err)
		}
	}
}

// StartContainer starts a created or exited container.
func (e *Engine) StartContainer(ctx context.Context, ref string) error {
	c, unlock, err := e.lockContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if c.State == model.StateRunning {
		return errf(model.ErrConflict, "container %s is already running", c.Name)
	}
	return e.startLocked(ctx, c, true)
}

// startLocked starts container c; the caller holds its op lock. A start by
// a user (not by a restart policy) resets the restart count and back-off
// and clears a stop by the user.
func (e *Engine) startLocked(ctx context.Context, c model.Container, byUser bool) error {
	if byUser {
		e.mu.Lock()
		e.cancelRestartLocked(c.ID, true)
		e.mu.Unlock()
		c.RestartCount, c.ManuallyStopped = 0, false
	}
	// Re-plumb the sandbox in case it was lost (idempotent joins).
	if err := e.ensureSandbox(ctx, c); err != nil {
		return err
	}
	// The embedded DNS server listens in the namespace before the first
	// process can ask it anything.
	if err := e.dnsReady(ctx, c.ID); err != nil {
		return fmt.Errorf("start container %s: embedded DNS server: %w", c.Name, err)
	}
	// Take the published host ports before the process starts.
	if err := e.publish(&c); err != nil {
		return err
	}
	pid, err := e.opts.Runtime.Start(ctx, c.ID)
	if err != nil {
		if e.releasePorts(c.ID) {
			e.applyFirewall()
		}
		if c.AutoRemove {
			// As dockerd: a --rm container that cannot start is removed
			// (which also ends waits for its removal).
			if rerr := e.removeContainer(context.WithoutCancel(ctx), c, true); rerr != nil {
				e.log.Warn("auto-remove after a failed start", "name", c.Name, "err", rerr)
			}
		} else {
			e.recordStartError(c, err)
		}
		return fmt.Errorf("start container %s: %w", c.Name, err)
	}
	c.State, c.Pid, c.StartedAt, c.ExitCode, c.FinishedAt, c.Paused = model.StateRunning, pid, e.now(), 0, time.Time{}, false
	c.Error = ""
	if err := e.opts.Store.Put(store.Containers, c.ID, c); err != nil {
		return fmt.Errorf("record container state: %w", err)
	}
	e.mu.Lock()
	if _, ok := e.containers[c.ID]; ok {
		e.containers[c.ID] = c
	}
	e.watchExitLocked(c.ID)
	e.mu.Unlock()
	e.containerEvent(c, events.ActionStart, nil)
	return nil
}

// lockContainer resolves ref, takes the container's op lock and returns
// the container as it is under that lock.
func (e *Engine) lockContainer(ref string) (model.Container, func(), error) {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return c, nil, err
	}
	unlock := e.ctrOps.lock(c.ID)
	e.mu.Lock()
	c, ok := e.containers[c.ID]
	e.mu.Unlock()
	if !ok {
		unlock()
		return c, nil, errf(model.ErrNotFound, "No such container: %s", strings.TrimPrefix(ref, "/"))
	}
	return c, unlock, nil
}

// watchExitLocked starts a goroutine that records the exit of the
// container's current run (the caller just started it, or found it
// running). Each run has its own watcher: the watcher of an earlier run may
// still be returning (the runtime drains that task's output first) when a
// restart starts the next, and its exit is not the new run's. A watcher
// whose run was replaced records nothing.
func (e *Engine) watchExitLocked(id string) {
	e.watchGen++
	gen := e.watchGen
	e.waiters[id] = gen
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		code, err := e.waitRun(id)
		current := func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.waiters[id] != gen {
				return false
			}
			delete(e.waiters, id)
			return true
		}
		if err != nil {
			current()
			return // daemon stopping; the next daemon watches again
		}
		unlock := e.ctrOps.lock(id)
		defer unlock()
		// Under the op lock: a start replaces the run (and the watcher)
		// under it too, so a current watcher's exit is its run's.
		if !current() {
			return
		}
		c, ok := e.setExited(id, code, time.Time{})
		if !ok {
			return
		}
		e.log.Info("container exited", "name", c.Name, "code", code)
		e.afterExit(c)
	}()
}

// waitRun waits for the exit of the container's task. A wait the runtime
// ended with an error (not the daemon stopping) is not an exit: the task's
// state says whether it exited, else the wait is taken up again.
func (e *Engine) waitRun(id string) (int, error) {
	pause := time.Second
	for {
		code, err := e.opts.Runtime.Wait(e.ctx, id)
		if err == nil || e.ctx.Err() != nil {
			return code, err
		}
		st, serr := e.opts.Runtime.State(e.ctx, id)
		switch {
		case errors.Is(serr, model.ErrNotFound):
			return 0, nil // gone from the runtime: exited
		case serr != nil:
			// The runtime does not answer: its exit is not known yet.
			err = errors.Join(err, serr)
		case st.Status != "running":
			return st.ExitCode, nil
		}
		e.log.Warn("wait for a container's exit failed; waiting again", "id", id, "in", pause, "err", err)
		select {
		case <-e.ctx.Done():
			return 0, e.ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// setExited records that a running container exited (store first, then
// memory) and wakes its waiters. The caller holds the container's op
// lock. It returns the container and whether it changed.
func (e *Engine) setExited(id string, code int, finished time.Time) (model.Container, bool) {
	e.mu.Lock()
	c, ok := e.containers[id]
	e.mu.Unlock()
	if !ok || c.State != model.StateRunning {
		return c, false
	}
	if finished.IsZero() {
		finished = e.now()
	}
	c.State, c.ExitCode, c.Pid, c.FinishedAt, c.Paused = model.StateExited, code, 0, finished, false
	hadPorts := len(c.Ports) > 0
	c.Ports = nil // a stopped container holds no host port
	if err := e.opts.Store.Put(store.Containers, id, c); err != nil {
		// Memory follows the store: keep "running" so a later exit or
		// restart records it again.
		e.log.Error("record container exit", "name", c.Name, "err", err)
		return c, false
	}
	e.mu.Lock()
	if _, ok := e.containers[id]; ok {
		e.containers[id] = c
	}
	e.notifyExitLocked(id, code, false)
	e.mu.Unlock()
	e.containerEvent(c, events.ActionDie, map[string]string{"exitCode": strconv.Itoa(code)})
	if hadPorts {
		e.applyFirewall()
	}
	return c, true
}

// StopContainer stops a running container (SIGTERM, then SIGKILL).
func (e *Engine) StopContainer(ctx context.Context, ref string, timeoutSeconds *int) error {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	t := 10 * time.Second
	if timeoutSeconds == nil {
		timeoutSeconds = c.Run.StopTimeout
	}
	if timeoutSeconds != nil && *timeoutSeconds >= 0 {
		t = time.Duration(*timeoutSeconds) * time.Second
	}
	e.stoppedByUser(c.ID)
	if c.State != model.StateRunning {
		return nil // a scheduled restart is cancelled
	}
	stopSig := stopSignalOf(c)
	e.containerEvent(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(stopSig))})
	if c.Paused {
		// The signal is delivered once thawed: signal, then thaw.
		if sr, ok := e.opts.Runtime.(SignalRuntime); ok {
			sr.Kill(ctx, c.ID, stopSig)
		}
		e.thaw(ctx, c)
	}
	if err := e.opts.Runtime.Stop(ctx, c.ID, t); err != nil {
		return fmt.Errorf("stop container %s: %w", c.Name, err)
	}
	e.markExited(ctx, c.ID)
	e.containerEvent(c, events.ActionStop, nil)
	return nil
}

// markExited refreshes a container's state from the runtime.
func (e *Engine) markExited(ctx context.Context, id string) {
	st, err := e.opts.Runtime.State(ctx, id)
	if err == nil && st.Status == "running" {
		return
	}
	unlock := e.ctrOps.lock(id)
	defer unlock()
	code, finished := 0, time.Time{}
	if err == nil {
		code, finished = st.ExitCode, st.FinishedAt
	}
	if c, ok := e.setExited(id, code, finished); ok {
		e.afterExit(c)
	}
}

// RemoveContainer deletes a container, its sandbox and its endpoints.
func (e *Engine) RemoveContainer(ctx context.Context, ref string, force bool) error {
	c, unlock, err := e.lockContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	return e.removeContainer(ctx, c, force)
}

// removeContainer: the caller holds the container's op lock.
func (e *Engine) removeContainer(ctx context.Context, c model.Container, force bool) error {
	e.mu.Lock()
	restarting := e.restartingLocked(c.ID)
	if restarting && force {
		e.cancelRestartLocked(c.ID, true)
	}
	e.mu.Unlock()
	if restarting && !force {
		return errf(model.ErrConflict, "cannot remove container %q: container is restarting: stop the container before removing or force remove", "/"+c.Name)
	}
	if c.State == model.StateRunning {
		st, err := e.opts.Runtime.State(ctx, c.ID)
		running := err != nil || st.Status == "running"
		if running && !force {
			return errf(model.ErrConflict, "cannot remove container %q: container is running: stop the container before removing or force remove", "/"+c.Name)
		}
	}
	if err := e.opts.Runtime.Delete(ctx, c.ID); err != nil {
		return fmt.Errorf("remove container %s: %w", c.Name, err)
	}
	e.crashPoint(CrashRemoveAfterRuntime)
	e.mu.Lock()
	sb := e.sandboxes[c.ID]
	eps := e.endpointsOfLocked(c.ID)
	e.mu.Unlock()
	nets := e.networksOf(eps)
	var errs []error
	for _, ep := range eps {
		if n, ok := nets[ep.NetworkID]; ok {
			if err := e.drivers[n.Driver].Leave(ctx, n, ep, sb); err != nil {
				// The record goes anyway; the kernel objects are the
				// driver's to sweep at the next start.
				errs = append(errs, fmt.Errorf("leave network %s: %w", n.Name, err))
			}
		}
	}
	if sb.NetnsPath != "" {
		if err := e.deleteNetns(sb.NetnsPath); err != nil {
			errs = append(errs, err)
		}
	}
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Containers, c.ID); err != nil {
			return err
		}
		if err := tx.Delete(store.Sandboxes, c.ID); err != nil {
			return err
		}
		for _, ep := range eps {
			if err := tx.Delete(store.Endpoints, ep.ID); err != nil {
				return err
			}
			if err := holdTx(tx, nets[ep.NetworkID], ep); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("delete container records: %w", err))...)
	}
	e.mu.Lock()
	delete(e.containers, c.ID)
	delete(e.sandboxes, c.ID)
	for _, ep := range eps {
		delete(e.endpoints, ep.ID)
	}
	e.notifyExitLocked(c.ID, c.ExitCode, true)
	e.cancelRestartLocked(c.ID, true)
	e.mu.Unlock()
	e.crashPoint(CrashRemoveAfterLocal)
	for _, ep := range eps {
		if n, ok := nets[ep.NetworkID]; ok {
			e.networkEvent(n, events.ActionDisconnect, c.ID)
		}
	}
	e.containerEvent(c, events.ActionDestroy, nil)
	global := false
	for netID, n := range nets {
		var on []model.Endpoint
		for _, ep := range eps {
			if ep.NetworkID == netID {
				on = append(on, ep)
			}
		}
		e.released(ctx, n, on)
		global = global || n.Scope == model.ScopeGlobal
	}
	if err := os.RemoveAll(filepath.Join(e.filesDir(), c.ID)); err != nil {
		errs = append(errs, err)
	}
	if c.AutoRemove {
		// --rm takes the anonymous volumes along, as Docker's.
		errs = append(errs, e.removeAnonymousVolumes(c))
	}
	if len(nets) > 0 {
		e.syncDNS()
	}
	if global || len(c.Ports) > 0 {
		// The VTEPs allowed follow the local endpoints; published ports
		// go with the container.
		errs = append(errs, e.applyFirewall())
	}
	e.log.Info("container removed", "name", c.Name, "id", c.ID[:12])
	return errors.Join(errs...)
}

// ConnectNetwork attaches a container to one more network (eth<N>).
func (e *Engine) ConnectNetwork(ctx context.Context, netRef, ctrRef string, r api.EndpointRequest) error {
	c, unlock, err := e.lockContainer(ctrRef)
	if err != nil {
		e.mu.Lock()
		_, nerr := e.networkLocked(netRef)
		e.mu.Unlock()
		if nerr != nil {
			return nerr
		}
		return err
	}
	defer unlock()
	e.mu.Lock()
	n, err := e.attachableLocked(netRef)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	sb := e.sandboxes[c.ID]
	eps := e.endpointsOfLocked(c.ID)
	e.mu.Unlock()
	if sb.HostNetwork || n.Driver == "host" {
		return errf(model.ErrForbidden, "container sharing network namespace with another container or host cannot be connected to any other network")
	}
	if n.Driver == "null" {
		return errf(model.ErrForbidden, "container cannot be disconnected from host network or connected to host network")
	}
	order := 0
	for _, ep := range eps {
		if ep.NetworkID == n.ID {
			return errf(model.ErrForbidden, "endpoint with name %s already exists in network %s", c.Name, n.Name)
		}
		if ep.Order >= order {
			order = ep.Order + 1
		}
	}
	if c.NetworkMode == model.NetNone && len(eps) == 0 {
		return errf(model.ErrForbidden, "container cannot be connected to multiple networks with one of the networks in private (none) mode")
	}
	if err := e.checkEndpointRequest(n, r); err != nil {
		return err
	}
	if p := staticAddrsProblem(n, r); p != "" {
		return errLines(model.ErrInvalid, "invalid endpoint settings:\n%s", p)
	}
	e.mu.Lock()
	if _, err := e.attachableLocked(n.ID); err != nil {
		e.mu.Unlock()
		return err
	}
	e.attaching[n.ID]++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.doneAttachingLocked(n.ID)
		e.mu.Unlock()
	}()
	bg := context.WithoutCancel(ctx)
	ep, err := e.attach(ctx, n, c, sb, r, order, e.wantsDefaultRoute(n, r.GwPriority, eps))
	if err != nil {
		return err
	}
	added := []model.Endpoint{ep}
	all := append(slices.Clone(eps), ep)
	want6 := false
	for _, x := range e.networksOf(all) {
		want6 = want6 || egress6(x)
	}
	gw, err := e.gatewayEndpoint(ctx, n, c, sb, all, want6)
	if err != nil {
		e.unplumb(bg, n, ep, sb)
		return err
	}
	if gw != nil {
		defer gw.done()
		added = append(added, gw.ep)
		all = append(all, gw.ep)
	}
	// A gateway interface made for an IPv4 overlay network gains IPv6
	// with the first overlay network with IPv6.
	fam, err := e.gatewayFamily(ctx, sb, all)
	if err != nil {
		if gw != nil {
			e.unplumb(bg, gw.n, gw.ep, sb)
		}
		e.unplumb(bg, n, ep, sb)
		return err
	}
	if fam != nil {
		defer fam.done()
	}
	e.crashPoint(CrashConnectAfterJoin)
	nets := e.networksOf(added)
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		for _, x := range added {
			if err := tx.Put(store.Endpoints, x.ID, x); err != nil {
				return err
			}
			if err := unholdTx(tx, nets[x.NetworkID], x); err != nil {
				return err
			}
			if err := e.saveIPAM(tx, nets[x.NetworkID]); err != nil {
				return err
			}
		}
		if fam != nil {
			if err := tx.Put(store.Endpoints, fam.ep.ID, fam.ep); err != nil {
				return err
			}
			return e.saveIPAM(tx, fam.n)
		}
		return nil
	})
	if err != nil {
		if fam != nil {
			fam.revert(bg)
		}
		if gw != nil {
			e.unplumb(bg, gw.n, gw.ep, sb)
		}
		e.unplumb(bg, n, ep, sb)
		return fmt.Errorf("record endpoint: %w", err)
	}
	e.mu.Lock()
	for _, x := range added {
		e.endpoints[x.ID] = x
	}
	e.mu.Unlock()
	if fam != nil {
		fam.committed(bg)
	}
	for _, x := range added {
		e.afterJoin(nets[x.NetworkID], x)
		e.networkEvent(nets[x.NetworkID], events.ActionConnect, c.ID)
	}
	e.namesChanged(c.ID)
	if len(c.Ports) > 0 {
		return e.applyFirewall() // the published ports may lead here now
	}
	return nil
}

// DisconnectNetwork detaches a container from a network.
func (e *Engine) DisconnectNetwork(ctx context.Context, netRef, ctrRef string, force bool) error {
	e.mu.Lock()
	n, err := e.networkLocked(netRef)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	c, unlock, err := e.lockContainer(ctrRef)
	if err != nil {
		if force {
			return nil
		}
		return err
	}
	defer unlock()
	e.mu.Lock()
	var ep *model.Endpoint
	for _, x := range e.endpointsOfLocked(c.ID) {
		if x.NetworkID == n.ID {
			ep = &x
		}
	}
	sb := e.sandboxes[c.ID]
	hadDefault := ep != nil && e.providesDefaultRouteLocked(*ep)
	e.mu.Unlock()
	if ep == nil {
		return errf(model.ErrForbidden, "container %s is not connected to network %s", c.ID, n.Name)
	}
	if err := e.detach(ctx, *ep, sb); err != nil && !force {
		return err
	}
	e.networkEvent(n, events.ActionDisconnect, c.ID)
	if hadDefault {
		// Hand the default route to the next network with a gateway.
		e.mu.Lock()
		rest := e.endpointsOfLocked(c.ID)
		e.mu.Unlock()
		nets := e.networksOf(rest)
		win := defaultRouteEndpoint(rest, nets)
		for _, o := range rest {
			if on := nets[o.NetworkID]; o.ID == win {
				if err := e.drivers[on.Driver].Join(ctx, on, o, driver.JoinInfo{Sandbox: sb, DefaultRoute: true}); err != nil {
					e.log.Warn("move default route", "name", c.Name, "network", on.Name, "err", err)
				}
			}
		}
	}
	e.dropGateway(ctx, c, sb)
	// The gateway interface loses IPv6 with the last overlay network with
	// IPv6 (when an IPv4 one keeps it).
	e.mu.Lock()
	rest := e.endpointsOfLocked(c.ID)
	e.mu.Unlock()
	var gwErr error
	if fam, err := e.gatewayFamily(ctx, sb, rest); err != nil {
		gwErr = err
	} else if fam != nil {
		gwErr = fam.record(ctx)
		fam.done()
	}
	if gwErr != nil {
		gwErr = fmt.Errorf("disconnected %s from %s, but: %w", c.Name, n.Name, gwErr)
	}
	e.namesChanged(c.ID)
	if n.Scope == model.ScopeGlobal || len(c.Ports) > 0 {
		return errors.Join(gwErr, e.applyFirewall()) // allowed VTEPs; where published ports lead
	}
	return gwErr
}

// gwAttach is a gateway bridge endpoint made for a container, not yet
// recorded; done ends its in-flight reservation on the gateway network.
type gwAttach struct {
	n    model.Network
	ep   model.Endpoint
	done func()
}

// gatewayEndpoint gives a container on an overlay network (not internal)
// an interface on the gateway bridge for egress, once. have are the
// container's endpoints so far (recorded or not).
//
// want6: the container is (or is about to be) on an overlay network with
// IPv6 and a way out, so the interface gets an IPv6 address too.
func (e *Engine) gatewayEndpoint(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox, have []model.Endpoint, want6 bool) (*gwAttach, error) {
	if !egress(n) {
		return nil, nil
	}
	nets := e.networksOf(have)
	order := 0
	for _, ep := range have {
		if nets[ep.NetworkID].Name == GatewayBridge {
			return nil, nil
		}
		if ep.Order >= order {
			order = ep.Order + 1
		}
	}
	gw, err := e.gatewayNetwork(ctx, want6)
	if err != nil {
		return nil, err
	}
	// The read lock keeps the gateway's IPv6 upgrade (gatewayIPv6, which
	// rebuilds its address state) out while an address is taken here.
	e.gwMu.RLock()
	defer e.gwMu.RUnlock()
	e.mu.Lock()
	if cur, ok := e.networks[gw.ID]; ok {
		gw = cur
	}
	e.attaching[gw.ID]++
	e.mu.Unlock()
	done := func() {
		e.mu.Lock()
		e.doneAttachingLocked(gw.ID)
		e.mu.Unlock()
	}
	// The interface has an IPv6 address (and route) only for an overlay
	// network with IPv6, as Docker's docker_gwbridge.
	on := gw
	on.EnableIPv6 = gw.EnableIPv6 && want6
	ep, err := e.attach(ctx, on, c, sb, api.EndpointRequest{}, order, e.wantsDefaultRoute(gw, 0, have))
	if err != nil {
		done()
		return nil, err
	}
	return &gwAttach{n: on, ep: ep, done: done}, nil
}

// egress: a container on n goes out through the gateway bridge.
func egress(n model.Network) bool { return n.Driver == "overlay" && !n.Internal }

// egress6: ... and needs IPv6 there.
func egress6(n model.Network) bool { return egress(n) && n.EnableIPv6 }

// gwFamily is a change of a container's gateway bridge interface gaining
// or losing IPv6, plumbed but not recorded yet: committed records it in
// memory (the caller wrote the endpoint to the store), revert undoes it.
type gwFamily struct {
	e            *Engine
	n            model.Network
	old, ep      model.Endpoint
	sb           model.Sandbox
	defaultRoute bool
	done         func()
}

// gatewayFamily gives a container's gateway bridge interface an IPv6
// address (and, if it gives the default route, the IPv6 default route)
// when eps, the container's endpoints after a connect or disconnect,
// include an overlay network with IPv6 and a way out, and takes them away
// when they include none, as the interface would have been made for eps.
// nil when nothing changes (no gateway interface, or the right family).
// The caller records the endpoint, then calls committed and done; on a
// failure before that, revert and done.
func (e *Engine) gatewayFamily(ctx context.Context, sb model.Sandbox, eps []model.Endpoint) (*gwFamily, error) {
	nets := e.networksOf(eps)
	var gw *model.Endpoint
	want6 := false
	for i := range eps {
		n, ok := nets[eps[i].NetworkID]
		if !ok {
			return nil, nil // a network not known (yet): no judgement
		}
		if n.Name == GatewayBridge && n.Scope == model.ScopeLocal {
			gw = &eps[i]
		}
		want6 = want6 || egress6(n)
	}
	if gw == nil || gw.Addr6.IsValid() == want6 {
		return nil, nil
	}
	gn := nets[gw.NetworkID]
	if want6 && !gn.EnableIPv6 {
		// The first overlay network with IPv6 on this host: the
		// gateway bridge gets its IPv6 subnet.
		up, err := e.gatewayNetwork(ctx, true)
		if err != nil {
			return nil, err
		}
		if up.ID != gn.ID {
			return nil, fmt.Errorf("%s was re-created meanwhile", GatewayBridge)
		}
	}
	// The read lock keeps the gateway's IPv6 upgrade out while an address
	// is taken, as in gatewayEndpoint.
	e.gwMu.RLock()
	defer e.gwMu.RUnlock()
	e.mu.Lock()
	if cur, ok := e.networks[gn.ID]; ok {
		gn = cur
	}
	e.attaching[gn.ID]++
	e.mu.Unlock()
	f := &gwFamily{e: e, n: gn, old: *gw, ep: *gw, sb: sb, defaultRoute: defaultRouteEndpoint(eps, nets) == gw.ID}
	f.done = func() {
		e.mu.Lock()
		e.doneAttachingLocked(gn.ID)
		e.mu.Unlock()
	}
	if want6 {
		p6, err := e.allocate6(ctx, gn, netip.Addr{}, gw.ID)
		if err != nil {
			f.done()
			return nil, fmt.Errorf("IPv6 address on %s: %w", GatewayBridge, err)
		}
		f.ep.Addr6 = p6
		for _, cfg := range gn.IPAM {
			if cfg.Subnet.Contains(p6.Addr()) {
				f.ep.Gateway6 = cfg.Gateway
			}
		}
	} else {
		f.ep.Addr6, f.ep.Gateway6 = netip.Prefix{}, netip.Addr{}
	}
	if err := e.drivers[gn.Driver].Join(ctx, gn, f.ep, driver.JoinInfo{Sandbox: sb, DefaultRoute: f.defaultRoute}); err != nil {
		f.revert(ctx)
		f.done()
		if want6 {
			return nil, fmt.Errorf("add IPv6 to the %s interface: %w", GatewayBridge, err)
		}
		return nil, fmt.Errorf("remove IPv6 from the %s interface: %w", GatewayBridge, err)
	}
	return f, nil
}

// revert plumbs the interface as it was recorded and gives back an
// address taken for the change.
func (f *gwFamily) revert(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	if err := f.e.drivers[f.n.Driver].Join(ctx, f.n, f.old, driver.JoinInfo{Sandbox: f.sb, DefaultRoute: f.defaultRoute}); err != nil {
		f.e.log.Warn("restore the gateway interface", "endpoint", f.old.ID, "err", err)
	}
	if f.ep.Addr6.IsValid() && !f.old.Addr6.IsValid() {
		f.e.release(ctx, f.n, f.ep.Addr6.Addr())
	}
}

// committed makes the recorded change the engine's view and gives back
// the IPv6 address the interface no longer has.
func (f *gwFamily) committed(ctx context.Context) {
	e := f.e
	e.mu.Lock()
	e.endpoints[f.ep.ID] = f.ep
	e.mu.Unlock()
	if f.old.Addr6.IsValid() && !f.ep.Addr6.IsValid() {
		e.release(context.WithoutCancel(ctx), f.n, f.old.Addr6.Addr())
		if err := e.opts.Store.Update(func(tx *store.Tx) error { return e.saveIPAM(tx, f.n) }); err != nil {
			e.log.Warn("save address state", "network", f.n.Name, "err", err)
		}
	}
	e.log.Info("gateway interface changed family", "container", f.ep.ContainerID, "ipv6", f.ep.Addr6)
	f.portFamilies()
}

// portFamilies updates, for a running container whose gateway interface
// changed family, which bindings on every address are served on IPv6 too
// (inspect shows them as [::]). The caller holds the container's op lock.
func (f *gwFamily) portFamilies() {
	e := f.e
	e.mu.Lock()
	c, ok := e.containers[f.ep.ContainerID]
	ep, _, pub := e.publishEndpointLocked(f.ep.ContainerID)
	e.mu.Unlock()
	if !ok || !pub || ep.ID != f.ep.ID || len(c.Ports) == 0 {
		return
	}
	c.Ports = slices.Clone(c.Ports)
	changed := false
	for i, m := range c.Ports {
		if v6 := !m.HostIP.IsValid() && ep.Addr6.IsValid(); m.IPv6 != v6 {
			c.Ports[i].IPv6, changed = v6, true
		}
	}
	if !changed {
		return
	}
	if err := e.opts.Store.Put(store.Containers, c.ID, c); err != nil {
		e.log.Warn("record published ports", "name", c.Name, "err", err)
		return
	}
	e.mu.Lock()
	if _, ok := e.containers[c.ID]; ok {
		e.containers[c.ID] = c
	}
	e.mu.Unlock()
}

// record writes the change to the store on its own and commits it, or
// reverts it if the store refuses.
func (f *gwFamily) record(ctx context.Context) error {
	e := f.e
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Endpoints, f.ep.ID, f.ep); err != nil {
			return err
		}
		return e.saveIPAM(tx, f.n)
	})
	if err != nil {
		f.revert(ctx)
		return fmt.Errorf("record the gateway interface: %w", err)
	}
	f.committed(ctx)
	return nil
}

// dropGateway removes the gateway bridge interface of a container that has
// no overlay network with a way out left.
func (e *Engine) dropGateway(ctx context.Context, c model.Container, sb model.Sandbox) {
	e.mu.Lock()
	var gw *model.Endpoint
	for _, ep := range e.endpointsOfLocked(c.ID) {
		n := e.networks[ep.NetworkID]
		if egress(n) {
			e.mu.Unlock()
			return
		}
		if n.Name == GatewayBridge {
			gw = &ep
		}
	}
	e.mu.Unlock()
	if gw != nil {
		if err := e.detach(ctx, *gw, sb); err != nil {
			e.log.Warn("drop gateway interface", "name", c.Name, "err", err)
		}
	}
}

// gatewayNetwork returns the gateway bridge network, creating it on first
// use (masquerade on, inter-container traffic off). want6: an overlay
// network with IPv6 needs it, so it gets an IPv6 subnet from the default
// pool (at creation, or added to an IPv4-only one by gatewayIPv6).
func (e *Engine) gatewayNetwork(ctx context.Context, want6 bool) (model.Network, error) {
	e.gwMu.Lock()
	defer e.gwMu.Unlock()
	e.mu.Lock()
	for _, n := range e.networks {
		if n.Name == GatewayBridge && n.Scope == model.ScopeLocal && !e.removingNets[n.ID] {
			e.mu.Unlock()
			if want6 && !n.EnableIPv6 {
				return e.gatewayIPv6(ctx, n)
			}
			return n, nil
		}
	}
	e.mu.Unlock()
	if _, ok := e.opts.IPAM.(IPAM6); want6 && !ok {
		return model.Network{}, errf(model.ErrInvalid, "vxnet does not support IPv6 on %s with this address allocator", GatewayBridge)
	}
	n := model.Network{ID: newID(), Name: GatewayBridge, Driver: "bridge", Scope: model.ScopeLocal, Created: e.now(),
		Options: map[string]string{model.OptBridgeName: GatewayBridge, model.OptICC: "false", model.OptMasquerade: "true"}}
	if want6 {
		n.EnableIPv6 = true
		n.IPAM = []model.IPAMConfig{{}, {Subnet: ipam.DefaultIPv6Pool}}
	}
	if err := e.createLocalNetwork(ctx, e.drivers["bridge"], &n); err != nil {
		return model.Network{}, fmt.Errorf("create %s: %w", GatewayBridge, err)
	}
	if err := e.applyFirewall(); err != nil {
		return model.Network{}, err
	}
	return n, nil
}

// gatewayIPv6 adds an IPv6 subnet (the default pool's) to the IPv4-only
// gateway bridge n in place, for the first container of an overlay network
// with IPv6: its IPv4 subnet and addresses stay. The caller holds gwMu, so
// no gateway address is being taken meanwhile.
func (e *Engine) gatewayIPv6(ctx context.Context, n model.Network) (model.Network, error) {
	if _, ok := e.opts.IPAM.(IPAM6); !ok {
		return model.Network{}, errf(model.ErrInvalid, "vxnet does not support IPv6 on %s with this address allocator", GatewayBridge)
	}
	var routes []netip.Prefix
	if e.opts.HostRoutes != nil {
		routes, _ = e.opts.HostRoutes()
	}
	e.mu.Lock()
	var inUse []netip.Addr
	for _, ep := range e.endpointsOnLocked(n.ID) {
		inUse = append(inUse, epAddrs(ep)...)
	}
	e.mu.Unlock()
	state, err := e.opts.IPAM.Snapshot(n.ID)
	if err != nil {
		return model.Network{}, err
	}
	restore := func() {
		if err := e.opts.IPAM.Restore(n.ID, n.IPAM, state, inUse); err != nil {
			e.log.Warn("restore gateway address state", "err", err)
		}
	}
	e.opts.IPAM.ReleasePool(n.ID)
	cfgs, err := e.opts.IPAM.RequestPool(n.ID, append(slices.Clone(n.IPAM), model.IPAMConfig{Subnet: ipam.DefaultIPv6Pool}), routes)
	if err == nil {
		err = e.opts.IPAM.Restore(n.ID, cfgs, nil, inUse)
	}
	if err != nil {
		restore()
		return model.Network{}, fmt.Errorf("add IPv6 to %s: %w", GatewayBridge, classify(err, model.ErrInvalid))
	}
	up := n
	up.EnableIPv6, up.IPAM = true, cfgs
	if err := e.drivers["bridge"].CreateNetwork(ctx, up); err != nil {
		restore()
		return model.Network{}, fmt.Errorf("add IPv6 to %s: %w", GatewayBridge, err)
	}
	if err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Networks, up.ID, up); err != nil {
			return err
		}
		return e.saveIPAM(tx, up)
	}); err != nil {
		restore()
		return model.Network{}, fmt.Errorf("record IPv6 of %s: %w", GatewayBridge, err)
	}
	e.mu.Lock()
	e.networks[up.ID] = up
	e.mu.Unlock()
	e.log.Info("gateway bridge has IPv6", "subnet", cfgs[len(cfgs)-1].Subnet)
	if err := e.applyFirewall(); err != nil {
		return model.Network{}, err
	}
	return up, nil
}

func (e *Engine) providesDefaultRouteLocked(ep model.Endpoint) bool {
	return defaultRouteEndpoint(e.endpointsOfLocked(ep.ContainerID), e.networks) == ep.ID
}

// ListContainers returns containers (running ones unless all).
func (e *Engine) ListContainers(ctx context.Context, all bool) ([]api.ContainerView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []api.ContainerView
	for _, c := range e.containers {
		if !all && c.State != model.StateRunning {
			continue
		}
		out = append(out, e.containerViewLocked(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container.Created.After(out[j].Container.Created) })
	return out, nil
}

func (e *Engine) containerViewLocked(c model.Container) api.ContainerView {
	v := api.ContainerView{Container: c, SandboxKey: e.sandboxes[c.ID].NetnsPath, Restarting: e.restartingLocked(c.ID)}
	dir := filepath.Join(e.filesDir(), c.ID)
	v.HostsPath, v.ResolvConfPath, v.HostnamePath = filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "hostname")
	for _, ep := range e.endpointsOfLocked(c.ID) {
		v.Endpoints = append(v.Endpoints, api.EndpointView{NetworkName: e.networks[ep.NetworkID].Name, Endpoint: ep})
	}
	if c.NetworkMode == model.NetHost || c.NetworkMode == model.NetNone {
		if n, err := e.networkLocked(c.NetworkMode); err == nil {
			v.Endpoints = append(v.Endpoints, api.EndpointView{NetworkName: n.Name, Endpoint: model.Endpoint{NetworkID: n.ID}})
		}
	}
	return v
}

// InspectContainer returns one container.
func (e *Engine) InspectContainer(ctx context.Context, ref string) (api.ContainerView, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.containerLocked(ref)
	if err != nil {
		return api.ContainerView{}, err
	}
	return e.containerViewLocked(c), nil
}

// WaitContainer blocks until the container is not running.
func (e *Engine) WaitContainer(ctx context.Context, ref string) (int, error) {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return 0, err
	}
	if c.State != model.StateRunning {
		return c.ExitCode, nil
	}
	code, err := e.opts.Runtime.Wait(ctx, c.ID)
	if err != nil {
		return 0, err
	}
	e.markExited(ctx, c.ID)
	return code, nil
}

// Logs streams a container's output.
func (e *Engine) Logs(ctx context.Context, ref string, stdout, stderr io.Writer, follow bool) error {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return err
	}
	return e.opts.Runtime.Logs(ctx, c.ID, stdout, stderr, follow)
}

// Exec runs a command in a running container.
func (e *Engine) Exec(ctx context.Context, ref string, cmd, env []string, stdout, stderr io.Writer) (int, error) {
	c, err := e.execTarget(ref, cmd)
	if err != nil {
		return 0, err
	}
	return e.opts.Runtime.Exec(ctx, c.ID, cmd, env, stdout, stderr)
}

// execTarget resolves the container an exec of cmd runs in: it must be
// running and cmd must not be empty.
func (e *Engine) execTarget(ref string, cmd []string) (model.Container, error) {
	c, err := e.lookupContainer(ref)
	if err != nil {
		return model.Container{}, err
	}
	if c.State != model.StateRunning {
		return model.Container{}, errf(model.ErrConflict, "container %s is not running", c.ID)
	}
	if c.Paused {
		return model.Container{}, errf(model.ErrConflict, "Container %s is paused, unpause the container before exec", c.ID)
	}
	if len(cmd) == 0 {
		return model.Container{}, errf(model.ErrInvalid, "no exec command specified")
	}
	return c, nil
}

// ensureSandbox re-creates a lost sandbox and re-joins endpoints. The
// caller holds the container's op lock (or is Start).
func (e *Engine) ensureSandbox(ctx context.Context, c model.Container) error {
	e.mu.Lock()
	sb := e.sandboxes[c.ID]
	eps := e.endpointsOfLocked(c.ID)
	e.mu.Unlock()
	if sb.NetnsPath == "" {
		return nil
	}
	fresh := !e.netnsPinned(sb.NetnsPath)
	if err := e.createNetns(sb.NetnsPath); err != nil {
		return err
	}
	nets := e.networksOf(eps)
	win := defaultRouteEndpoint(eps, nets)
	for _, ep := range eps {
		n, ok := nets[ep.NetworkID]
		if !ok {
			continue
		}
		dr := ep.ID == win
		if err := e.drivers[n.Driver].Join(ctx, n, ep, driver.JoinInfo{Sandbox: sb, DefaultRoute: dr}); err != nil {
			return fmt.Errorf("restore sandbox of %s: %w", c.Name, err)
		}
	}
	if fresh {
		if e.opts.DNS != nil {
			e.opts.DNS.Reopen(c.ID) // its sockets were in the lost namespace
		}
		e.log.Info("sandbox re-created", "name", c.Name)
	}
	// A gateway interface recorded with the wrong family (made before it
	// followed the container's overlay networks, or a change that failed
	// half-way) is set right.
	f, err := e.gatewayFamily(ctx, sb, eps)
	if err != nil {
		return fmt.Errorf("restore sandbox of %s: %w", c.Name, err)
	}
	if f != nil {
		defer f.done()
		if err := f.record(ctx); err != nil {
			return fmt.Errorf("restore sandbox of %s: %w", c.Name, err)
		}
	}
	return nil
}

// allocate reserves an address on a local or global network for endpoint
// epID.
func (e *Engine) allocate(ctx context.Context, n model.Network, static netip.Addr, epID string) (netip.Prefix, error) {
	if n.Scope == model.ScopeGlobal {
		return e.allocateGlobal(ctx, n, static, epID)
	}
	p, err := e.opts.IPAM.Allocate(n.ID, static)
	if err != nil {
		return netip.Prefix{}, classify(err, model.ErrInvalid)
	}
	return p, nil
}

// allocate6 reserves an IPv6 address on a network with IPv6 for endpoint
// epID.
func (e *Engine) allocate6(ctx context.Context, n model.Network, static netip.Addr, epID string) (netip.Prefix, error) {
	if n.Scope == model.ScopeGlobal {
		return e.allocateGlobal6(ctx, n, static, epID)
	}
	a6, ok := e.opts.IPAM.(IPAM6)
	if !ok {
		return netip.Prefix{}, errf(model.ErrInvalid, "vxnet does not support IPv6 on %s networks yet", n.Driver)
	}
	p, err := a6.Allocate6(n.ID, static)
	if err != nil {
		return netip.Prefix{}, classify(err, model.ErrInvalid)
	}
	return p, nil
}

func (e *Engine) release(ctx context.Context, n model.Network, a netip.Addr) error {
	if n.Scope == model.ScopeGlobal {
		return e.releaseGlobal(ctx, n, a)
	}
	e.opts.IPAM.Release(n.ID, a)
	return nil
}
