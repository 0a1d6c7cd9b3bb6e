// Package apitest provides an in-memory api.Backend for tests of the API
// server and the CLI. It keeps networks, containers, endpoints and images in
// maps, resolves references as the engine does (full ID, exact name, unique
// ID prefix) and fakes container processes from their command:
//
//	true              exits 0 at once
//	false             exits 1 at once
//	exit N            exits N at once
//	echo ARGS...      writes ARGS to stdout, exits 0
//	anything else     runs until stopped (exit code 137 when stopped)
//
// Exec runs the ExecHook, by default: "echo ARGS" writes to stdout and
// exits 0; "fail N" writes "out" to stdout and "err" to stderr and exits N;
// "exit N" exits N.
package apitest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// Err is an error with its own message in a model error class.
type Err struct {
	Msg   string
	Class error
}

func (e *Err) Error() string { return e.Msg }
func (e *Err) Unwrap() error { return e.Class }

// Errorf returns an *Err of the class with a formatted message.
func Errorf(class error, format string, args ...any) error {
	return &Err{Msg: fmt.Sprintf(format, args...), Class: class}
}

type ctr struct {
	c      model.Container
	eps    []model.Endpoint // in attach order
	out    []chunk
	exited chan struct{} // closed at exit of the current run
	runs   int           // starts so far
	gone   chan struct{} // closed at removal
}

type chunk struct {
	stderr bool
	data   []byte
}

// Fake is an in-memory api.Backend and api.ExitWaiter. The zero value is
// not usable; call New.
type Fake struct {
	mu       sync.Mutex
	nets     map[string]*model.Network
	ctrs     map[string]*ctr
	images   []api.Image
	calls    map[string]int
	nextAddr map[string]int

	// ExecHook, when set, replaces the default exec behaviour.
	ExecHook func(cmd, env []string, stdout, stderr io.Writer) (int, error)
	// Fail, when set, is consulted at the start of every call; a non-nil
	// error is returned as the call's error.
	Fail func(method string) error
}

var (
	_ api.Backend    = (*Fake)(nil)
	_ api.ExitWaiter = (*Fake)(nil)
)

// New returns a Fake with the predefined networks bridge, host and none and
// the image busybox:latest.
func New() *Fake {
	f := &Fake{
		nets:     map[string]*model.Network{},
		ctrs:     map[string]*ctr{},
		calls:    map[string]int{},
		nextAddr: map[string]int{},
	}
	now := time.Now()
	for _, n := range []model.Network{
		{Name: model.NetBridge, Driver: "bridge", IPAM: []model.IPAMConfig{{
			Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: netip.MustParseAddr("172.17.0.1")}},
			Options: map[string]string{model.OptDefaultBridge: "true"}},
		{Name: model.NetHost, Driver: "host"},
		{Name: model.NetNone, Driver: "null"},
	} {
		n.ID, n.Scope, n.Created, n.Predefined = newID(), model.ScopeLocal, now, true
		f.nets[n.ID] = &n
	}
	f.images = append(f.images, api.Image{ID: "sha256:" + newID(), Name: "busybox:latest", Created: now.Add(-time.Hour).Unix(), Size: 4_260_000})
	return f
}

func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Calls returns how often the method was called.
func (f *Fake) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// TotalCalls returns the number of calls of any method.
func (f *Fake) TotalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// enter counts the call and returns the injected failure, if any; the
// caller holds no lock.
func (f *Fake) enter(method string) error {
	f.mu.Lock()
	f.calls[method]++
	fail := f.Fail
	f.mu.Unlock()
	if fail != nil {
		return fail(method)
	}
	return nil
}

// resolve finds an object by full ID, exact name, or unique ID prefix.
func resolve[T any](m map[string]T, name func(T) string, ref string) (string, bool, error) {
	if _, ok := m[ref]; ok {
		return ref, true, nil
	}
	for id, v := range m {
		if name(v) == ref {
			return id, true, nil
		}
	}
	var found []string
	for id := range m {
		if ref != "" && strings.HasPrefix(id, ref) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return "", false, nil
	case 1:
		return found[0], true, nil
	}
	return "", false, Errorf(model.ErrInvalid, "multiple IDs found with provided prefix: %s", ref)
}

func (f *Fake) network(ref string) (*model.Network, error) {
	id, ok, err := resolve(f.nets, func(n *model.Network) string { return n.Name }, ref)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, Errorf(model.ErrNotFound, "network %s not found", ref)
	}
	return f.nets[id], nil
}

func (f *Fake) container(ref string) (*ctr, error) {
	id, ok, err := resolve(f.ctrs, func(c *ctr) string { return c.c.Name }, strings.TrimPrefix(ref, "/"))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, Errorf(model.ErrNotFound, "No such container: %s", ref)
	}
	return f.ctrs[id], nil
}

// CreateNetwork implements api.Backend.
func (f *Fake) CreateNetwork(ctx context.Context, req api.NetworkCreate) (model.Network, error) {
	if err := f.enter("CreateNetwork"); err != nil {
		return model.Network{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nets {
		if n.Name == req.Name {
			return model.Network{}, Errorf(model.ErrConflict, "network with name %s already exists", req.Name)
		}
	}
	drv := req.Driver
	if drv == "" {
		drv = "bridge"
	}
	if drv != "bridge" && drv != "overlay" {
		return model.Network{}, Errorf(model.ErrNotFound, "plugin %q not found", drv)
	}
	for _, c := range req.IPAM {
		if c.Subnet.Masked() != c.Subnet {
			return model.Network{}, Errorf(model.ErrInvalid, "invalid network config: invalid subnet %s: it should be %s", c.Subnet, c.Subnet.Masked())
		}
	}
	n := model.Network{
		ID: newID(), Name: req.Name, Driver: drv, Scope: model.ScopeLocal, Created: time.Now(),
		IPAM: req.IPAM, Internal: req.Internal, Attachable: req.Attachable, Labels: req.Labels, Options: req.Options,
	}
	if drv == "overlay" {
		n.Scope = model.ScopeGlobal
	}
	if len(n.IPAM) == 0 {
		k := len(f.nets)
		n.IPAM = []model.IPAMConfig{{
			Subnet:  netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(17 + k), 0, 0}), 16),
			Gateway: netip.AddrFrom4([4]byte{172, byte(17 + k), 0, 1}),
		}}
	}
	for i, c := range n.IPAM {
		if !c.Gateway.IsValid() {
			n.IPAM[i].Gateway = c.Subnet.Masked().Addr().Next()
		}
	}
	f.nets[n.ID] = &n
	return n, nil
}

func (f *Fake) endpointsOf(netID string) []model.Endpoint {
	var out []model.Endpoint
	for _, c := range f.ctrs {
		for _, ep := range c.eps {
			if ep.NetworkID == netID {
				out = append(out, ep)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ListNetworks implements api.Backend.
func (f *Fake) ListNetworks(ctx context.Context) ([]api.NetworkView, error) {
	if err := f.enter("ListNetworks"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.NetworkView
	for _, n := range f.nets {
		out = append(out, api.NetworkView{Network: *n, Endpoints: f.endpointsOf(n.ID)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Network.Name < out[j].Network.Name })
	return out, nil
}

// InspectNetwork implements api.Backend.
func (f *Fake) InspectNetwork(ctx context.Context, ref string, verbose bool) (api.NetworkView, error) {
	if err := f.enter("InspectNetwork"); err != nil {
		return api.NetworkView{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.network(ref)
	if err != nil {
		return api.NetworkView{}, err
	}
	v := api.NetworkView{Network: *n, Endpoints: f.endpointsOf(n.ID)}
	if verbose {
		v.Verbose = map[string]any{"endpoints": len(v.Endpoints)}
	}
	return v, nil
}

// RemoveNetwork implements api.Backend.
func (f *Fake) RemoveNetwork(ctx context.Context, ref string) error {
	if err := f.enter("RemoveNetwork"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.network(ref)
	if err != nil {
		return err
	}
	if n.Predefined {
		return Errorf(model.ErrForbidden, "%s is a pre-defined network and cannot be removed", n.Name)
	}
	if len(f.endpointsOf(n.ID)) > 0 {
		return Errorf(model.ErrConflict, "error while removing network: network %s has active endpoints", n.Name)
	}
	delete(f.nets, n.ID)
	return nil
}

// PruneNetworks implements api.Backend.
func (f *Fake) PruneNetworks(ctx context.Context) ([]string, error) {
	if err := f.enter("PruneNetworks"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var names []string
	for id, n := range f.nets {
		if !n.Predefined && len(f.endpointsOf(id)) == 0 {
			names = append(names, n.Name)
			delete(f.nets, id)
		}
	}
	sort.Strings(names)
	return names, nil
}

// attach adds an endpoint on network n to container c (lock held).
func (f *Fake) attach(c *ctr, n *model.Network, req api.EndpointRequest) error {
	for _, ep := range c.eps {
		if ep.NetworkID == n.ID {
			return Errorf(model.ErrForbidden, "endpoint with name %s already exists in network %s", c.c.Name, n.Name)
		}
	}
	ep := model.Endpoint{
		ID: newID(), NetworkID: n.ID, ContainerID: c.c.ID, Name: c.c.Name,
		Aliases: req.Aliases, IfName: fmt.Sprintf("eth%d", len(c.eps)), Order: len(c.eps),
	}
	if len(n.IPAM) > 0 {
		sub := n.IPAM[0].Subnet.Masked()
		addr := req.IP
		if addr.IsValid() {
			if !sub.Contains(addr) {
				return Errorf(model.ErrInvalid, "invalid address %s: it does not belong to any of this network's subnets", addr)
			}
			for _, other := range f.endpointsOf(n.ID) {
				if other.Addr.Addr() == addr {
					return Errorf(model.ErrConflict, "Address already in use")
				}
			}
			ep.StaticIP = true
		} else {
			f.nextAddr[n.ID]++
			addr = sub.Addr()
			for i := 0; i < f.nextAddr[n.ID]+1; i++ {
				addr = addr.Next()
			}
		}
		ep.Addr = netip.PrefixFrom(addr, sub.Bits())
		ep.Gateway = n.IPAM[0].Gateway
		ep.MAC = model.MACForIP(addr)
	}
	c.eps = append(c.eps, ep)
	return nil
}

// ConnectNetwork implements api.Backend.
func (f *Fake) ConnectNetwork(ctx context.Context, netRef, ctrRef string, req api.EndpointRequest) error {
	if err := f.enter("ConnectNetwork"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.network(netRef)
	if err != nil {
		return err
	}
	c, err := f.container(ctrRef)
	if err != nil {
		return err
	}
	return f.attach(c, n, req)
}

// DisconnectNetwork implements api.Backend.
func (f *Fake) DisconnectNetwork(ctx context.Context, netRef, ctrRef string, force bool) error {
	if err := f.enter("DisconnectNetwork"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.network(netRef)
	if err != nil {
		return err
	}
	c, err := f.container(ctrRef)
	if err != nil {
		return err
	}
	for i, ep := range c.eps {
		if ep.NetworkID == n.ID {
			c.eps = append(c.eps[:i], c.eps[i+1:]...)
			return nil
		}
	}
	return Errorf(model.ErrForbidden, "container %s is not connected to network %s", c.c.Name, n.Name)
}

// CreateContainer implements api.Backend.
func (f *Fake) CreateContainer(ctx context.Context, req api.ContainerCreate) (model.Container, error) {
	if err := f.enter("CreateContainer"); err != nil {
		return model.Container{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	found := false
	for _, img := range f.images {
		found = found || img.Name == req.Image || img.Name == req.Image+":latest" || img.ID == req.Image
	}
	if !found {
		return model.Container{}, Errorf(model.ErrNotFound, "No such image: %s", req.Image)
	}
	name := req.Name
	if name == "" {
		name = "ctr_" + newID()[:6]
	}
	for _, c := range f.ctrs {
		if c.c.Name == name {
			return model.Container{}, Errorf(model.ErrConflict, "Conflict. The container name \"/%s\" is already in use by container %q", name, c.c.ID)
		}
	}
	id := newID()
	c := &ctr{c: model.Container{
		ID: id, Name: name, Image: req.Image, Cmd: req.Cmd, Env: req.Env, Hostname: req.Hostname,
		Created: time.Now(), AutoRemove: req.AutoRemove, NetworkMode: req.Network, State: model.StateCreated,
	}, gone: make(chan struct{})}
	if c.c.Hostname == "" {
		c.c.Hostname = id[:12]
	}
	netName := req.Network
	if netName == "" {
		netName = model.NetBridge
	}
	if netName != model.NetHost && netName != model.NetNone {
		n, err := f.network(netName)
		if errors.Is(err, model.ErrNotFound) {
			// As the engine: a 404 would make the docker CLI pull the image.
			return model.Container{}, Errorf(model.ErrInvalid, "network %s not found", netName)
		}
		if err != nil {
			return model.Container{}, err
		}
		if err := f.attach(c, n, req.Endpoint); err != nil {
			return model.Container{}, err
		}
	}
	f.ctrs[id] = c
	return c.c, nil
}

// StartContainer implements api.Backend.
func (f *Fake) StartContainer(ctx context.Context, ref string) error {
	if err := f.enter("StartContainer"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return err
	}
	if c.c.State == model.StateRunning {
		return nil
	}
	c.c.State, c.c.StartedAt, c.c.Pid = model.StateRunning, time.Now(), 4242
	c.c.FinishedAt = time.Time{}
	c.exited = make(chan struct{})
	c.runs++
	cmd := c.c.Cmd
	if len(cmd) == 0 {
		cmd = []string{"sh"}
	}
	switch cmd[0] {
	case "true":
		f.exit(c, 0)
	case "false":
		f.exit(c, 1)
	case "exit":
		code := 0
		if len(cmd) > 1 {
			code, _ = strconv.Atoi(cmd[1])
		}
		f.exit(c, code)
	case "echo":
		c.out = append(c.out, chunk{data: []byte(strings.Join(cmd[1:], " ") + "\n")})
		f.exit(c, 0)
	}
	return nil
}

// exit ends the container's run (lock held); --rm containers are removed.
func (f *Fake) exit(c *ctr, code int) {
	c.c.State, c.c.ExitCode, c.c.FinishedAt, c.c.Pid = model.StateExited, code, time.Now(), 0
	close(c.exited)
	if c.c.AutoRemove {
		delete(f.ctrs, c.c.ID)
		close(c.gone)
	}
}

// StopContainer implements api.Backend.
func (f *Fake) StopContainer(ctx context.Context, ref string, timeoutSeconds *int) error {
	if err := f.enter("StopContainer"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return err
	}
	if c.c.State == model.StateRunning {
		f.exit(c, 137)
	}
	return nil
}

// RemoveContainer implements api.Backend.
func (f *Fake) RemoveContainer(ctx context.Context, ref string, force bool) error {
	if err := f.enter("RemoveContainer"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return err
	}
	if c.c.State == model.StateRunning {
		if !force {
			return Errorf(model.ErrConflict, "cannot remove container %q: container is running: stop the container before removing or force remove", c.c.Name)
		}
		c.c.AutoRemove = false
		f.exit(c, 137)
	}
	delete(f.ctrs, c.c.ID)
	close(c.gone)
	return nil
}

func (f *Fake) RenameContainer(ctx context.Context, ref, newName string) error {
	if err := f.enter("RenameContainer"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return err
	}
	newName = strings.TrimPrefix(newName, "/")
	if newName == "" {
		return Errorf(model.ErrInvalid, "Neither old nor new names may be empty")
	}
	for _, o := range f.ctrs {
		if o.c.Name == newName {
			return Errorf(model.ErrConflict, "Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+newName, o.c.ID)
		}
	}
	c.c.Name = newName
	for i := range c.eps {
		c.eps[i].Name = newName
	}
	return nil
}

func (f *Fake) view(c *ctr) api.ContainerView {
	v := api.ContainerView{
		Container:      c.c,
		HostsPath:      "/run/vxnet/containers/" + c.c.ID + "/hosts",
		ResolvConfPath: "/run/vxnet/containers/" + c.c.ID + "/resolv.conf",
		HostnamePath:   "/run/vxnet/containers/" + c.c.ID + "/hostname",
		SandboxKey:     "/run/vxnet/netns/" + c.c.ID[:12],
	}
	for _, ep := range c.eps {
		name := ep.NetworkID
		if n, ok := f.nets[ep.NetworkID]; ok {
			name = n.Name
		}
		v.Endpoints = append(v.Endpoints, api.EndpointView{NetworkName: name, Endpoint: ep})
	}
	return v
}

// ListContainers implements api.Backend.
func (f *Fake) ListContainers(ctx context.Context, all bool) ([]api.ContainerView, error) {
	if err := f.enter("ListContainers"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.ContainerView
	for _, c := range f.ctrs {
		if all || c.c.State == model.StateRunning {
			out = append(out, f.view(c))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Container.Created.After(out[j].Container.Created) })
	return out, nil
}

// InspectContainer implements api.Backend.
func (f *Fake) InspectContainer(ctx context.Context, ref string) (api.ContainerView, error) {
	if err := f.enter("InspectContainer"); err != nil {
		return api.ContainerView{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return api.ContainerView{}, err
	}
	return f.view(c), nil
}

// WaitContainer implements api.Backend.
func (f *Fake) WaitContainer(ctx context.Context, ref string) (int, error) {
	if err := f.enter("WaitContainer"); err != nil {
		return -1, err
	}
	f.mu.Lock()
	c, err := f.container(ref)
	if err != nil {
		f.mu.Unlock()
		return -1, err
	}
	if c.c.State != model.StateRunning {
		code := c.c.ExitCode
		f.mu.Unlock()
		return code, nil
	}
	exited := c.exited
	f.mu.Unlock()
	select {
	case <-exited:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.c.ExitCode, nil
}

// WaitExit implements api.ExitWaiter.
func (f *Fake) WaitExit(ctx context.Context, ref string, removed bool) (func(context.Context) (int, error), error) {
	if err := f.enter("WaitExit"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return nil, err
	}
	// The next exit: the current run's if running, else the next start's.
	gen := c.runs
	var run chan struct{}
	if c.c.State == model.StateRunning {
		run = c.exited
	}
	return func(ctx context.Context) (int, error) {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for run == nil {
			f.mu.Lock()
			if c.runs > gen {
				run = c.exited
			}
			f.mu.Unlock()
			if run != nil {
				break
			}
			select {
			case <-c.gone:
				return -1, Errorf(model.ErrNotFound, "No such container: %s", ref)
			default:
			}
			select {
			case <-ctx.Done():
				return -1, ctx.Err()
			case <-c.gone:
			case <-t.C:
			}
		}
		select {
		case <-run:
		case <-ctx.Done():
			return -1, ctx.Err()
		}
		if removed {
			select {
			case <-c.gone:
			case <-ctx.Done():
				return -1, ctx.Err()
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return c.c.ExitCode, nil
	}, nil
}

// Logs implements api.Backend.
func (f *Fake) Logs(ctx context.Context, ref string, stdout, stderr io.Writer, follow bool) error {
	if err := f.enter("Logs"); err != nil {
		return err
	}
	f.mu.Lock()
	c, err := f.container(ref)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	running, exited := c.c.State == model.StateRunning, c.exited
	f.mu.Unlock()
	if follow && running {
		select {
		case <-exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f.mu.Lock()
	out := append([]chunk(nil), c.out...)
	f.mu.Unlock()
	for _, ch := range out {
		w := stdout
		if ch.stderr {
			w = stderr
		}
		if _, err := w.Write(ch.data); err != nil {
			return err
		}
	}
	return nil
}

// AddOutput appends output to a container's log, as if it printed it.
func (f *Fake) AddOutput(ref string, stderr bool, s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.container(ref)
	if err != nil {
		return err
	}
	c.out = append(c.out, chunk{stderr: stderr, data: []byte(s)})
	return nil
}

// Exec implements api.Backend.
func (f *Fake) Exec(ctx context.Context, ref string, cmd []string, env []string, stdout, stderr io.Writer) (int, error) {
	if err := f.enter("Exec"); err != nil {
		return -1, err
	}
	f.mu.Lock()
	c, err := f.container(ref)
	if err == nil && c.c.State != model.StateRunning {
		err = Errorf(model.ErrConflict, "container %s is not running", c.c.ID)
	}
	hook := f.ExecHook
	f.mu.Unlock()
	if err != nil {
		return -1, err
	}
	if hook != nil {
		return hook(cmd, env, stdout, stderr)
	}
	switch cmd[0] {
	case "echo":
		_, err := io.WriteString(stdout, strings.Join(cmd[1:], " ")+"\n")
		return 0, err
	case "fail", "exit":
		code := 1
		if len(cmd) > 1 {
			code, _ = strconv.Atoi(cmd[1])
		}
		if cmd[0] == "fail" {
			io.WriteString(stdout, "out\n")
			io.WriteString(stderr, "err\n")
		}
		return code, nil
	}
	return 127, Errorf(model.ErrNotFound, "exec: %q: executable file not found in $PATH", cmd[0])
}

// ListImages implements api.Backend.
func (f *Fake) ListImages(ctx context.Context) ([]api.Image, error) {
	if err := f.enter("ListImages"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Image(nil), f.images...), nil
}

// ImportImage implements api.Backend.
func (f *Fake) ImportImage(ctx context.Context, name string, rootfsTar io.Reader) (api.Image, error) {
	if err := f.enter("ImportImage"); err != nil {
		return api.Image{}, err
	}
	h := sha256.New()
	n, err := io.Copy(h, rootfsTar)
	if err != nil {
		return api.Image{}, fmt.Errorf("fake: read image: %w", err)
	}
	if n == 0 {
		return api.Image{}, Errorf(model.ErrInvalid, "image import: empty archive")
	}
	img := api.Image{ID: "sha256:" + hex.EncodeToString(h.Sum(nil)), Name: name, Created: time.Now().Unix(), Size: n}
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.images[:0]
	for _, old := range f.images {
		if old.Name != name {
			kept = append(kept, old)
		}
	}
	f.images = append(kept, img)
	return img, nil
}

// Info implements api.Backend.
func (f *Fake) Info(ctx context.Context) (api.Info, error) {
	if err := f.enter("Info"); err != nil {
		return api.Info{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in := api.Info{ID: "fake", Name: "fakehost", Version: "test", Images: len(f.images), DataRoot: "/var/lib/vxnet", ExecRoot: "/run/vxnet"}
	for _, c := range f.ctrs {
		in.Containers++
		if c.c.State == model.StateRunning {
			in.Running++
		}
	}
	return in, nil
}
