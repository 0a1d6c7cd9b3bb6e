package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// CreateContainer records a container, makes its sandbox (a pinned network
// namespace), reserves its address and plumbs its first network, so the
// address survives restarts. Nothing is left behind on failure.
func (e *Engine) CreateContainer(ctx context.Context, req api.ContainerCreate) (model.Container, error) {
	img, err := e.opts.Images.Get(req.Image)
	if err != nil {
		return model.Container{}, classify(err, model.ErrNotFound)
	}
	cmd := req.Cmd
	if len(cmd) == 0 {
		cmd = img.Cmd
	}
	if len(cmd) == 0 {
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
	netRef := req.Network
	if netRef == "" || netRef == "default" {
		netRef = model.NetBridge
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	name := strings.TrimPrefix(req.Name, "/")
	taken := func(s string) bool {
		for _, c := range e.containers {
			if c.Name == s {
				return true
			}
		}
		return false
	}
	if name == "" {
		name = randomName(taken)
	} else if taken(name) {
		var other string
		for _, c := range e.containers {
			if c.Name == name {
				other = c.ID
			}
		}
		return model.Container{}, errf(model.ErrConflict, "Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+name, other)
	}
	n, err := e.networkLocked(netRef)
	if err != nil {
		// Not 404: the docker CLI takes a 404 from create for a missing
		// image and would try to pull it.
		if errors.Is(err, model.ErrNotFound) {
			return model.Container{}, errf(model.ErrInvalid, "network %s not found", netRef)
		}
		return model.Container{}, err
	}
	if err := e.checkEndpointRequest(n, req.Endpoint); err != nil {
		return model.Container{}, err
	}
	id := newID()
	hostname := req.Hostname
	if hostname == "" {
		hostname = id[:12]
	}
	if n.Driver == "host" && req.Hostname == "" {
		hostname, _ = os.Hostname()
	}
	c := model.Container{
		ID: id, Name: name, Image: img.Name, Cmd: cmd, Env: req.Env, Hostname: hostname,
		Created: e.now(), AutoRemove: req.AutoRemove, NetworkMode: n.Name, State: model.StateCreated,
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
	if err := e.writeSandboxFiles(c, sb, nil); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { os.RemoveAll(filepath.Join(e.filesDir(), id)) })
	var ep *model.Endpoint
	if n.Driver == "bridge" || n.Driver == "overlay" {
		x, err := e.attachLocked(ctx, n, c, sb, req.Endpoint, 0)
		if err != nil {
			return fail(err)
		}
		ep = &x
		undo = append(undo, func() { e.detachLocked(bg, x, sb) })
		gw, err := e.ensureGatewayLocked(ctx, n, c, sb)
		if err != nil {
			return fail(err)
		}
		if gw != nil {
			undo = append(undo, func() { e.detachLocked(bg, *gw, sb) })
		}
	}
	spec := ContainerSpec{ID: id, Image: img.ID, Args: cmd, Env: req.Env, Hostname: hostname,
		NetnsPath: sb.NetnsPath, Mounts: e.mounts(id)}
	if err := e.opts.Runtime.Create(ctx, spec); err != nil {
		return fail(fmt.Errorf("create container: %w", err))
	}
	undo = append(undo, func() { e.opts.Runtime.Delete(bg, id) })
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Containers, id, c); err != nil {
			return err
		}
		return tx.Put(store.Sandboxes, id, sb)
	})
	if err != nil {
		return fail(err)
	}
	e.containers[id] = c
	e.sandboxes[id] = sb
	if ep != nil {
		e.refreshHostsLocked(n.ID) // peers' files and this one's
	}
	e.log.Info("container created", "name", name, "id", id[:12], "network", n.Name)
	return c, nil
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
	return nil
}

// attachLocked reserves an address on n, records the endpoint and plumbs
// it into the sandbox. order is the interface index (eth<order>).
func (e *Engine) attachLocked(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox, r api.EndpointRequest, order int) (model.Endpoint, error) {
	return e.attachNamedLocked(ctx, n, c, sb, r, order, fmt.Sprintf("eth%d", order))
}

// attachNamedLocked is attachLocked with the interface name given.
func (e *Engine) attachNamedLocked(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox, r api.EndpointRequest, order int, ifName string) (model.Endpoint, error) {
	addr, err := e.allocate(ctx, n, r.IP)
	if err != nil {
		return model.Endpoint{}, err
	}
	ep := model.Endpoint{
		ID: newID(), NetworkID: n.ID, ContainerID: c.ID, Name: c.Name, Addr: addr,
		MAC: model.MACForIP(addr.Addr()), Aliases: r.Aliases, StaticIP: r.IP.IsValid(),
		IfName: ifName, Order: order,
	}
	for _, cfg := range n.IPAM {
		if cfg.Subnet.Contains(addr.Addr()) {
			ep.Gateway = cfg.Gateway
		}
	}
	ep.MTU = e.mtuFor(ctx, n)
	bg := context.WithoutCancel(ctx)
	release := func() { e.release(bg, n, addr.Addr()) }
	d := e.drivers[n.Driver]
	ji := driver.JoinInfo{Sandbox: sb, DefaultRoute: e.wantsDefaultRouteLocked(n, c.ID)}
	if err := d.Join(ctx, n, ep, ji); err != nil {
		d.Leave(bg, n, ep, sb)
		release()
		return model.Endpoint{}, fmt.Errorf("join %s to network %s: %w", c.Name, n.Name, err)
	}
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Endpoints, ep.ID, ep); err != nil {
			return err
		}
		return e.saveIPAMLocked(tx, n.ID)
	})
	if err != nil {
		d.Leave(bg, n, ep, sb)
		release()
		return model.Endpoint{}, err
	}
	e.endpoints[ep.ID] = ep
	e.afterJoinLocked(ctx, n, ep)
	return ep, nil
}

// wantsDefaultRouteLocked: the first network with a gateway (and a way
// out) gives the sandbox its default route.
func (e *Engine) wantsDefaultRouteLocked(n model.Network, ctrID string) bool {
	if !givesDefaultRoute(n) {
		return false
	}
	for _, ep := range e.endpointsOfLocked(ctrID) {
		if o, ok := e.networks[ep.NetworkID]; ok && givesDefaultRoute(o) {
			return false
		}
	}
	return true
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

// detachLocked unplumbs an endpoint, releases its address and forgets it.
func (e *Engine) detachLocked(ctx context.Context, ep model.Endpoint, sb model.Sandbox) error {
	n, ok := e.networks[ep.NetworkID]
	if ok {
		if err := e.drivers[n.Driver].Leave(ctx, n, ep, sb); err != nil {
			return fmt.Errorf("leave network %s: %w", n.Name, err)
		}
		e.beforeReleaseLocked(ctx, n, ep)
		e.release(ctx, n, ep.Addr.Addr())
	}
	delete(e.endpoints, ep.ID)
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Endpoints, ep.ID); err != nil {
			return err
		}
		return e.saveIPAMLocked(tx, ep.NetworkID)
	})
	if ok && n.Scope == model.ScopeGlobal {
		e.applyFirewallLocked(ctx) // the VTEPs allowed follow the local endpoints
	}
	return err
}

// StartContainer starts a created or exited container.
func (e *Engine) StartContainer(ctx context.Context, ref string) error {
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	if err != nil {
		e.mu.Unlock()
		return err
	}
	if c.State == model.StateRunning {
		e.mu.Unlock()
		return errf(model.ErrConflict, "container %s is already running", c.Name)
	}
	// Re-plumb the sandbox in case it was lost (idempotent joins).
	if err := e.ensureSandboxLocked(ctx, c); err != nil {
		e.mu.Unlock()
		return err
	}
	e.mu.Unlock()

	pid, err := e.opts.Runtime.Start(ctx, c.ID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.Name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[c.ID]
	if !ok {
		return errf(model.ErrNotFound, "No such container: %s", ref)
	}
	c.State, c.Pid, c.StartedAt, c.ExitCode, c.FinishedAt = model.StateRunning, pid, e.now(), 0, time.Time{}
	e.containers[c.ID] = c
	if err := e.opts.Store.Put(store.Containers, c.ID, c); err != nil {
		return err
	}
	e.watchExitLocked(c.ID)
	return nil
}

// watchExitLocked starts a goroutine that records the container's exit.
func (e *Engine) watchExitLocked(id string) {
	if e.waiters[id] {
		return
	}
	e.waiters[id] = true
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		code, err := e.opts.Runtime.Wait(e.ctx, id)
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.waiters, id)
		if err != nil {
			return // daemon stopping; the next daemon watches again
		}
		c, ok := e.containers[id]
		if !ok {
			return
		}
		c.State, c.ExitCode, c.Pid, c.FinishedAt = model.StateExited, code, 0, e.now()
		e.containers[id] = c
		e.opts.Store.Put(store.Containers, id, c)
		e.log.Info("container exited", "name", c.Name, "code", code)
		e.notifyExitLocked(id, code, false)
		if c.AutoRemove {
			if err := e.removeContainerLocked(e.ctx, c, true); err != nil {
				e.log.Warn("auto-remove", "name", c.Name, "err", err)
			}
		}
	}()
}

// StopContainer stops a running container (SIGTERM, then SIGKILL).
func (e *Engine) StopContainer(ctx context.Context, ref string, timeoutSeconds *int) error {
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	t := 10 * time.Second
	if timeoutSeconds != nil && *timeoutSeconds >= 0 {
		t = time.Duration(*timeoutSeconds) * time.Second
	}
	if err := e.opts.Runtime.Stop(ctx, c.ID, t); err != nil {
		return fmt.Errorf("stop container %s: %w", c.Name, err)
	}
	e.markExited(ctx, c.ID)
	return nil
}

// markExited refreshes a container's state from the runtime.
func (e *Engine) markExited(ctx context.Context, id string) {
	st, err := e.opts.Runtime.State(ctx, id)
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	if !ok || c.State != model.StateRunning {
		return
	}
	if err == nil && st.Status == "running" {
		return
	}
	c.State, c.Pid = model.StateExited, 0
	if err == nil {
		c.ExitCode = st.ExitCode
		c.FinishedAt = st.FinishedAt
	}
	if c.FinishedAt.IsZero() {
		c.FinishedAt = e.now()
	}
	e.containers[id] = c
	e.opts.Store.Put(store.Containers, id, c)
	e.notifyExitLocked(id, c.ExitCode, false)
}

// RemoveContainer deletes a container, its sandbox and its endpoints.
func (e *Engine) RemoveContainer(ctx context.Context, ref string, force bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.containerLocked(ref)
	if err != nil {
		return err
	}
	return e.removeContainerLocked(ctx, c, force)
}

func (e *Engine) removeContainerLocked(ctx context.Context, c model.Container, force bool) error {
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
	sb := e.sandboxes[c.ID]
	var errs []error
	touched := map[string]bool{}
	for _, ep := range e.endpointsOfLocked(c.ID) {
		touched[ep.NetworkID] = true
		if err := e.detachLocked(ctx, ep, sb); err != nil {
			errs = append(errs, err)
		}
	}
	if sb.NetnsPath != "" {
		if err := e.deleteNetns(sb.NetnsPath); err != nil {
			errs = append(errs, err)
		}
	}
	os.RemoveAll(filepath.Join(e.filesDir(), c.ID))
	delete(e.containers, c.ID)
	delete(e.sandboxes, c.ID)
	err := e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Delete(store.Containers, c.ID); err != nil {
			return err
		}
		return tx.Delete(store.Sandboxes, c.ID)
	})
	errs = append(errs, err)
	for netID := range touched {
		e.refreshHostsLocked(netID)
	}
	e.notifyExitLocked(c.ID, c.ExitCode, true)
	e.log.Info("container removed", "name", c.Name, "id", c.ID[:12])
	return errors.Join(errs...)
}

// ConnectNetwork attaches a container to one more network (eth<N>).
func (e *Engine) ConnectNetwork(ctx context.Context, netRef, ctrRef string, r api.EndpointRequest) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.networkLocked(netRef)
	if err != nil {
		return err
	}
	c, err := e.containerLocked(ctrRef)
	if err != nil {
		return err
	}
	sb := e.sandboxes[c.ID]
	if sb.HostNetwork || n.Driver == "host" {
		return errf(model.ErrForbidden, "container sharing network namespace with another container or host cannot be connected to any other network")
	}
	if n.Driver == "null" {
		return errf(model.ErrForbidden, "container cannot be disconnected from host network or connected to host network")
	}
	eps := e.endpointsOfLocked(c.ID)
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
	ep, err := e.attachLocked(ctx, n, c, sb, r, order)
	if err != nil {
		return err
	}
	if _, err := e.ensureGatewayLocked(ctx, n, c, sb); err != nil {
		e.detachLocked(context.WithoutCancel(ctx), ep, sb)
		return err
	}
	e.refreshHostsLocked(n.ID)
	return nil
}

// DisconnectNetwork detaches a container from a network.
func (e *Engine) DisconnectNetwork(ctx context.Context, netRef, ctrRef string, force bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, err := e.networkLocked(netRef)
	if err != nil {
		return err
	}
	c, err := e.containerLocked(ctrRef)
	if err != nil {
		if force {
			return nil
		}
		return err
	}
	var ep *model.Endpoint
	for _, x := range e.endpointsOfLocked(c.ID) {
		if x.NetworkID == n.ID {
			ep = &x
		}
	}
	if ep == nil {
		return errf(model.ErrForbidden, "container %s is not connected to network %s", c.ID, n.Name)
	}
	sb := e.sandboxes[c.ID]
	hadDefault := e.providesDefaultRouteLocked(*ep)
	if err := e.detachLocked(ctx, *ep, sb); err != nil && !force {
		return err
	}
	if hadDefault {
		// Hand the default route to the next network with a gateway.
		for _, o := range e.endpointsOfLocked(c.ID) {
			on := e.networks[o.NetworkID]
			if givesDefaultRoute(on) {
				e.drivers[on.Driver].Join(ctx, on, o, driver.JoinInfo{Sandbox: sb, DefaultRoute: true})
				break
			}
		}
	}
	e.dropGatewayLocked(ctx, c, sb)
	e.refreshHostsLocked(n.ID)
	e.writeSandboxFiles(c, sb, e.peersLocked(c.ID))
	return nil
}

// ensureGatewayLocked gives a container on an overlay network (not
// internal) an interface on the gateway bridge for egress, once.
func (e *Engine) ensureGatewayLocked(ctx context.Context, n model.Network, c model.Container, sb model.Sandbox) (*model.Endpoint, error) {
	if n.Driver != "overlay" || n.Internal {
		return nil, nil
	}
	order := 0
	for _, ep := range e.endpointsOfLocked(c.ID) {
		if e.networks[ep.NetworkID].Name == GatewayBridge {
			return nil, nil
		}
		if ep.Order >= order {
			order = ep.Order + 1
		}
	}
	gw, err := e.gatewayNetworkLocked(ctx)
	if err != nil {
		return nil, err
	}
	ep, err := e.attachLocked(ctx, gw, c, sb, api.EndpointRequest{}, order)
	if err != nil {
		return nil, err
	}
	return &ep, nil
}

// dropGatewayLocked removes the gateway bridge interface of a container
// that has no overlay network with a way out left.
func (e *Engine) dropGatewayLocked(ctx context.Context, c model.Container, sb model.Sandbox) {
	var gw *model.Endpoint
	for _, ep := range e.endpointsOfLocked(c.ID) {
		n := e.networks[ep.NetworkID]
		if n.Driver == "overlay" && !n.Internal {
			return
		}
		if n.Name == GatewayBridge {
			gw = &ep
		}
	}
	if gw != nil {
		e.detachLocked(ctx, *gw, sb)
	}
}

// gatewayNetworkLocked returns the gateway bridge network, creating it on
// first use (masquerade on, inter-container traffic off).
func (e *Engine) gatewayNetworkLocked(ctx context.Context) (model.Network, error) {
	for _, n := range e.networks {
		if n.Name == GatewayBridge && n.Scope == model.ScopeLocal {
			return n, nil
		}
	}
	n := model.Network{ID: newID(), Name: GatewayBridge, Driver: "bridge", Scope: model.ScopeLocal, Created: e.now(),
		Options: map[string]string{model.OptBridgeName: GatewayBridge, model.OptICC: "false", model.OptMasquerade: "true"}}
	if err := e.createLocalNetworkLocked(ctx, e.drivers["bridge"], &n); err != nil {
		return model.Network{}, fmt.Errorf("create %s: %w", GatewayBridge, err)
	}
	e.applyFirewallLocked(ctx)
	return n, nil
}

func (e *Engine) providesDefaultRouteLocked(ep model.Endpoint) bool {
	for _, o := range e.endpointsOfLocked(ep.ContainerID) {
		if givesDefaultRoute(e.networks[o.NetworkID]) {
			return o.ID == ep.ID
		}
	}
	return false
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
	v := api.ContainerView{Container: c, SandboxKey: e.sandboxes[c.ID].NetnsPath}
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
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
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
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.opts.Runtime.Logs(ctx, c.ID, stdout, stderr, follow)
}

// Exec runs a command in a running container.
func (e *Engine) Exec(ctx context.Context, ref string, cmd, env []string, stdout, stderr io.Writer) (int, error) {
	e.mu.Lock()
	c, err := e.containerLocked(ref)
	e.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if c.State != model.StateRunning {
		return 0, errf(model.ErrConflict, "container %s is not running", c.ID)
	}
	if len(cmd) == 0 {
		return 0, errf(model.ErrInvalid, "no exec command specified")
	}
	return e.opts.Runtime.Exec(ctx, c.ID, cmd, env, stdout, stderr)
}

// ensureSandboxLocked re-creates a lost sandbox and re-joins endpoints.
func (e *Engine) ensureSandboxLocked(ctx context.Context, c model.Container) error {
	sb := e.sandboxes[c.ID]
	if sb.NetnsPath == "" {
		return nil
	}
	fresh := !e.netnsPinned(sb.NetnsPath)
	if err := e.createNetns(sb.NetnsPath); err != nil {
		return err
	}
	first := true
	for _, ep := range e.endpointsOfLocked(c.ID) {
		n, ok := e.networks[ep.NetworkID]
		if !ok {
			continue
		}
		dr := first && givesDefaultRoute(n)
		if dr {
			first = false
		}
		if err := e.drivers[n.Driver].Join(ctx, n, ep, driver.JoinInfo{Sandbox: sb, DefaultRoute: dr}); err != nil {
			return fmt.Errorf("restore sandbox of %s: %w", c.Name, err)
		}
	}
	if fresh {
		e.log.Info("sandbox re-created", "name", c.Name)
	}
	return nil
}

// allocate reserves an address on a local or global network.
func (e *Engine) allocate(ctx context.Context, n model.Network, static netip.Addr) (netip.Prefix, error) {
	if n.Scope == model.ScopeGlobal {
		return e.allocateGlobal(ctx, n, static)
	}
	p, err := e.opts.IPAM.Allocate(n.ID, static)
	if err != nil {
		return netip.Prefix{}, classify(err, model.ErrInvalid)
	}
	return p, nil
}

func (e *Engine) release(ctx context.Context, n model.Network, a netip.Addr) {
	if n.Scope == model.ScopeGlobal {
		e.releaseGlobal(ctx, n, a)
		return
	}
	e.opts.IPAM.Release(n.ID, a)
}
