package api

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/vxnet/vxnet/internal/model"
)

func (s *server) containerCreate(w http.ResponseWriter, r *http.Request) {
	var req container.CreateRequest
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	cc, err := containerCreateRequest(strings.TrimPrefix(r.URL.Query().Get("name"), "/"), req)
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := s.b.CreateContainer(r.Context(), cc)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: c.ID, Warnings: []string{}})
}

// containerCreateRequest turns Docker's create request into the Backend's.
// A container starts on one network (NetworkMode, or the only entry of
// EndpointsConfig); more are added with network connect.
func containerCreateRequest(name string, req container.CreateRequest) (ContainerCreate, error) {
	if req.Config == nil {
		return ContainerCreate{}, apiErr(model.ErrInvalid, "config cannot be empty in order to create a container")
	}
	if strings.TrimSpace(req.Config.Image) == "" {
		return ContainerCreate{}, apiErr(model.ErrInvalid, "no image given: an image name is required")
	}
	if err := checkCreateFields(req); err != nil {
		return ContainerCreate{}, err
	}
	cc := ContainerCreate{
		Name:      name,
		Image:     req.Config.Image,
		Cmd:       slices.Clone(req.Config.Cmd),
		Env:       slices.Clone(req.Config.Env),
		Hostname:  req.Config.Hostname,
		Tty:       req.Config.Tty,
		OpenStdin: req.Config.OpenStdin,
		StdinOnce: req.Config.StdinOnce,
	}
	if req.HostConfig != nil {
		cc.ConsoleSize = req.HostConfig.ConsoleSize
		rp := req.HostConfig.RestartPolicy
		if err := container.ValidateRestartPolicy(rp); err != nil {
			return ContainerCreate{}, apiErr(model.ErrInvalid, "%s", err.Error())
		}
		if req.HostConfig.AutoRemove && !rp.IsNone() {
			return ContainerCreate{}, apiErr(model.ErrInvalid, "can't create 'AutoRemove' container with restart policy")
		}
		if !rp.IsNone() {
			cc.RestartPolicy = model.RestartPolicy{Name: string(rp.Name), MaximumRetryCount: rp.MaximumRetryCount}
		}
	}
	mounts, err := createMounts(req)
	if err != nil {
		return ContainerCreate{}, err
	}
	cc.Mounts = mounts
	rc, err := runConfig(req.Config, req.HostConfig)
	if err != nil {
		return ContainerCreate{}, err
	}
	cc.Run = rc
	if err := checkMountTargets(cc.Mounts, rc); err != nil {
		return ContainerCreate{}, err
	}
	mode := ""
	var bindings network.PortMap
	publishAll := false
	if req.HostConfig != nil {
		hc := req.HostConfig
		cc.AutoRemove = hc.AutoRemove
		mode = string(hc.NetworkMode)
		for _, a := range hc.DNS {
			if !a.IsValid() {
				return ContainerCreate{}, apiErr(model.ErrInvalid, "invalid HostConfig.Dns entry")
			}
			cc.DNS = append(cc.DNS, a.Unmap())
		}
		cc.DNSSearch = slices.Clone(hc.DNSSearch)
		cc.DNSOptions = slices.Clone(hc.DNSOptions)
		cc.Links = slices.Clone(hc.Links)
		for _, x := range hc.ExtraHosts {
			eh, err := parseExtraHost(x)
			if err != nil {
				return ContainerCreate{}, err
			}
			cc.ExtraHosts = append(cc.ExtraHosts, eh)
		}
		bindings, publishAll = hc.PortBindings, hc.PublishAllPorts
	}
	if err := portRequest(&cc, req.Config.ExposedPorts, bindings, publishAll); err != nil {
		return ContainerCreate{}, err
	}
	if mode == network.NetworkDefault {
		mode = ""
	}
	var eps map[string]*network.EndpointSettings
	if req.NetworkingConfig != nil {
		eps = req.NetworkingConfig.EndpointsConfig
	}
	// The first network is the network mode (the docker CLI sends the
	// first --network there); the other entries are attached at create in
	// name order.
	var keys []string
	for k := range eps {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if mode == "" && len(keys) > 0 {
		mode = keys[0]
		if mode == network.NetworkDefault {
			mode = ""
		}
	}
	for _, k := range keys {
		es, err := endpointRequest(eps[k])
		if err != nil {
			return ContainerCreate{}, err
		}
		key := k
		if key == network.NetworkDefault {
			key = ""
		}
		if key == mode {
			cc.Endpoint = es
			continue
		}
		if mode == network.NetworkHost || mode == network.NetworkNone || key == network.NetworkHost || key == network.NetworkNone || key == "" {
			return ContainerCreate{}, apiErr(model.ErrInvalid, "conflicting options: cannot attach both user-defined and non-user-defined network-modes")
		}
		cc.Extra = append(cc.Extra, NetworkAttach{Network: key, Endpoint: es})
	}
	cc.Network = mode
	return cc, nil
}

func (s *server) containerList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := f.validate("id", "name", "status", "network", "label"); err != nil {
		writeError(w, err)
		return
	}
	// limit (ps -n, -l): the newest N containers of any state, as dockerd.
	limit := 0
	if q := r.URL.Query().Get("limit"); q != "" {
		if limit, err = strconv.Atoi(q); err != nil {
			writeError(w, apiErr(model.ErrInvalid, "invalid limit %q: %v", q, err))
			return
		}
	}
	all := boolParam(r, "all") || limit > 0
	if boolParam(r, "size") {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support container sizes (ps --size)"))
		return
	}
	views, err := s.b.ListContainers(r.Context(), all || len(f["status"]) > 0)
	if err != nil {
		writeError(w, err)
		return
	}
	slices.SortStableFunc(views, func(a, b ContainerView) int { return b.Container.Created.Compare(a.Container.Created) })
	out := []container.Summary{}
	now := time.Now()
	for _, v := range views {
		if limit > 0 && len(out) == limit {
			break
		}
		c := v.Container
		if !all && len(f["status"]) == 0 && c.State != model.StateRunning {
			continue
		}
		if !f.matchAny("id", c.ID, true) || !f.matchAny("name", c.Name, true) || !f.matchAny("status", stateOf(v), false) ||
			!f.matchLabels(labelsOf(c)) {
			continue
		}
		if nets, ok := f["network"]; ok && len(nets) > 0 {
			found := false
			for _, ep := range v.Endpoints {
				found = found || nets[ep.NetworkName] || nets[ep.Endpoint.NetworkID]
			}
			if !found {
				continue
			}
		}
		out = append(out, toSummary(v, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func toSummary(v ContainerView, now time.Time) container.Summary {
	c := v.Container
	sum := container.Summary{
		ID:      c.ID,
		Names:   []string{"/" + c.Name},
		Image:   c.Image,
		ImageID: c.ImageID,
		Command: strings.Join(append(slices.Clone(c.Run.Entrypoint), c.Cmd...), " "),
		Created: c.Created.Unix(),
		Ports:   portSummaries(c),
		Labels:  labelsOf(c),
		State:   container.ContainerState(stateOf(v)),
		Status:  statusText(v, now),
		Mounts:  mountPoints(c.Mounts),
		NetworkSettings: &container.NetworkSettingsSummary{
			Networks: endpointSettings(v.Endpoints),
		},
	}
	sum.HostConfig.NetworkMode = networkMode(c)
	return sum
}

func networkMode(c model.Container) string {
	if c.NetworkMode == "" {
		return network.NetworkBridge
	}
	return c.NetworkMode
}

// stateOf is Docker's state word: created, running, paused, restarting,
// exited.
func stateOf(v ContainerView) string {
	switch {
	case v.Restarting:
		return "restarting"
	case v.Container.State == model.StateRunning && v.Container.Paused:
		return "paused"
	}
	return v.Container.State
}

// statusText is Docker's STATUS column: "Up 5 minutes", "Up 2 seconds
// (Paused)", "Restarting (1) 3 seconds ago", "Exited (0) 2 hours ago",
// "Created".
func statusText(v ContainerView, now time.Time) string {
	c := v.Container
	if v.Restarting {
		return fmt.Sprintf("Restarting (%d) %s ago", c.ExitCode, HumanDuration(now.Sub(c.FinishedAt)))
	}
	switch c.State {
	case model.StateRunning:
		if c.Paused {
			return "Up " + HumanDuration(now.Sub(c.StartedAt)) + " (Paused)"
		}
		return "Up " + HumanDuration(now.Sub(c.StartedAt))
	case model.StateExited:
		if c.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, HumanDuration(now.Sub(c.FinishedAt)))
	case model.StateCreated:
		return "Created"
	}
	if c.State == "" {
		return "Unknown"
	}
	return strings.ToUpper(c.State[:1]) + c.State[1:]
}

// HumanDuration renders a duration the way Docker's status and CREATED
// columns do ("Less than a second", "5 seconds", "About a minute", "3 hours").
func HumanDuration(d time.Duration) string {
	secs := int(d.Seconds())
	switch {
	case secs < 1:
		return "Less than a second"
	case secs == 1:
		return "1 second"
	case secs < 60:
		return fmt.Sprintf("%d seconds", secs)
	}
	mins := int(d.Minutes())
	switch {
	case mins == 1:
		return "About a minute"
	case mins < 60:
		return fmt.Sprintf("%d minutes", mins)
	}
	hours := int(d.Hours() + 0.5)
	switch {
	case hours == 1:
		return "About an hour"
	case hours < 48:
		return fmt.Sprintf("%d hours", hours)
	case hours < 24*7*2:
		return fmt.Sprintf("%d days", hours/24)
	case hours < 24*30*2:
		return fmt.Sprintf("%d weeks", hours/24/7)
	case hours < 24*365*2:
		return fmt.Sprintf("%d months", hours/24/30)
	}
	return fmt.Sprintf("%d years", int(d.Hours())/24/365)
}

func endpointSettings(eps []EndpointView) map[string]*network.EndpointSettings {
	out := map[string]*network.EndpointSettings{}
	for _, e := range eps {
		ep := e.Endpoint
		es := &network.EndpointSettings{
			NetworkID:  ep.NetworkID,
			EndpointID: ep.ID,
			Gateway:    ep.Gateway,
			MacAddress: network.HardwareAddr(ep.MAC),
			Aliases:    slices.Clone(ep.Aliases),
			DNSNames:   dnsNames(ep),
		}
		if ep.Addr.IsValid() {
			es.IPAddress = ep.Addr.Addr()
			es.IPPrefixLen = ep.Addr.Bits()
		}
		if ep.Addr6.IsValid() {
			es.GlobalIPv6Address = ep.Addr6.Addr()
			es.GlobalIPv6PrefixLen = ep.Addr6.Bits()
			es.IPv6Gateway = ep.Gateway6
		}
		if (ep.StaticIP && ep.Addr.IsValid()) || (ep.StaticIP6 && ep.Addr6.IsValid()) || len(ep.LinkLocalIPs) > 0 {
			es.IPAMConfig = &network.EndpointIPAMConfig{LinkLocalIPs: slices.Clone(ep.LinkLocalIPs)}
			if ep.StaticIP {
				es.IPAMConfig.IPv4Address = ep.Addr.Addr()
			}
			if ep.StaticIP6 {
				es.IPAMConfig.IPv6Address = ep.Addr6.Addr()
			}
		}
		es.GwPriority = ep.GwPriority
		if ep.IfNameStatic {
			es.DriverOpts = map[string]string{model.OptEndpointIfName: ep.IfName}
		}
		out[e.NetworkName] = es
	}
	return out
}

func dnsNames(ep model.Endpoint) []string {
	var names []string
	if ep.Name != "" {
		names = append(names, ep.Name)
	}
	names = append(names, ep.Aliases...)
	if len(ep.ContainerID) >= 12 {
		names = append(names, ep.ContainerID[:12])
	}
	return names
}

func (s *server) containerInspect(w http.ResponseWriter, r *http.Request) {
	v, err := s.b.InspectContainer(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, toInspect(v))
}

func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func toInspect(v ContainerView) container.InspectResponse {
	c := v.Container
	out := container.InspectResponse{
		ID:      c.ID,
		Created: dockerTime(c.Created),
		Args:    []string{},
		State: &container.State{
			Status:     container.ContainerState(stateOf(v)),
			Running:    c.State == model.StateRunning || v.Restarting,
			Paused:     c.State == model.StateRunning && c.Paused,
			Restarting: v.Restarting,
			Error:      c.Error,
			Pid:        c.Pid,
			ExitCode:   c.ExitCode,
			StartedAt:  dockerTime(c.StartedAt),
			FinishedAt: dockerTime(c.FinishedAt),
		},
		Image:          imageIDOf(c),
		ResolvConfPath: v.ResolvConfPath,
		HostnamePath:   v.HostnamePath,
		HostsPath:      v.HostsPath,
		Name:           "/" + c.Name,
		Driver:         "runc",
		RestartCount:   c.RestartCount,
		Platform:       "linux",
		ExecIDs:        nil,
		HostConfig: &container.HostConfig{
			NetworkMode:     container.NetworkMode(networkMode(c)),
			AutoRemove:      c.AutoRemove,
			PortBindings:    portBindingsOf(c),
			PublishAllPorts: c.PublishAll,
			RestartPolicy:   restartPolicyOf(c),
		},
		Mounts: mountPoints(c.Mounts),
		Config: &container.Config{
			Hostname:     c.Hostname,
			Tty:          c.Tty,
			OpenStdin:    c.OpenStdin,
			StdinOnce:    c.StdinOnce,
			Env:          slices.Clone(c.Env),
			Cmd:          slices.Clone(c.Cmd),
			Image:        c.Image,
			Labels:       labelsOf(c),
			ExposedPorts: exposedOf(c),
		},
		NetworkSettings: &container.NetworkSettings{
			SandboxID:  c.ID,
			SandboxKey: v.SandboxKey,
			Networks:   endpointSettings(v.Endpoints),
			Ports:      portsOf(c),
		},
	}
	if args := append(slices.Clone(c.Run.Entrypoint), c.Cmd...); len(args) > 0 {
		out.Path = args[0]
		out.Args = args[1:]
	}
	inspectRunConfig(&out, c.Run)
	return out
}

// imageIDOf is inspect's top-level Image: the ID of the container's image
// (Config.Image keeps the reference the client gave).
func imageIDOf(c model.Container) string {
	if c.ImageID != "" {
		return c.ImageID
	}
	return c.Image // made before containers recorded their image's ID
}

func labelsOf(c model.Container) map[string]string {
	if c.Run.Labels == nil {
		return map[string]string{}
	}
	return maps.Clone(c.Run.Labels)
}

func (s *server) containerStart(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	v, err := s.b.InspectContainer(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	if v.Container.State == model.StateRunning {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := s.b.StartContainer(r.Context(), ref); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stopTimeout reads the t query parameter of a stop or restart: nil when
// absent.
func stopTimeout(r *http.Request) (*int, error) {
	t := r.URL.Query().Get("t")
	if t == "" {
		return nil, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return nil, apiErr(model.ErrInvalid, "invalid value for t: %q is not a number", t)
	}
	return &n, nil
}

func (s *server) containerStop(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("id")
	timeout, err := stopTimeout(r)
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := s.b.InspectContainer(r.Context(), ref)
	if err != nil {
		writeError(w, err)
		return
	}
	if v.Container.State != model.StateRunning && !v.Restarting {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if err := s.b.StopContainer(r.Context(), ref, timeout); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) containerRemove(w http.ResponseWriter, r *http.Request) {
	if boolParam(r, "link") {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support rm --link"))
		return
	}
	remove := s.b.RemoveContainer
	if boolParam(r, "v") {
		vs, ok := s.volumeService(w)
		if !ok {
			return
		}
		remove = vs.RemoveContainerVolumes
	}
	if err := remove(r.Context(), r.PathValue("id"), boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// containerWait answers Docker's wait. The wait is registered and the
// response headers are flushed before it blocks, so a client that waits
// before it starts the container (docker run) knows the wait is in place.
func (s *server) containerWait(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := r.PathValue("id")
	cond := container.WaitCondition(r.URL.Query().Get("condition"))
	switch cond {
	case "", container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		writeError(w, apiErr(model.ErrInvalid, "invalid condition: %q", cond))
		return
	}
	var wait func(context.Context) (int, error)
	if ew, ok := s.b.(ExitWaiter); ok && cond != "" && cond != container.WaitConditionNotRunning {
		fn, err := ew.WaitExit(ctx, ref, cond == container.WaitConditionRemoved)
		if err != nil {
			writeError(w, err)
			return
		}
		wait = fn
	} else {
		v, err := s.b.InspectContainer(ctx, ref)
		if err != nil {
			writeError(w, err)
			return
		}
		id := v.Container.ID
		wait = func(ctx context.Context) (int, error) {
			if cond == container.WaitConditionNextExit || cond == container.WaitConditionRemoved {
				if err := s.waitLeaveCreated(ctx, id); err != nil {
					return -1, err
				}
			}
			return s.b.WaitContainer(ctx, id)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	code, err := wait(ctx)
	resp := container.WaitResponse{StatusCode: int64(code)}
	if err != nil {
		resp.Error = &container.WaitExitError{Message: err.Error()}
	}
	writeBody(w, resp)
}

// waitLeaveCreated polls until the container is no longer in the created
// state (the fallback for next-exit when the Backend is no ExitWaiter).
func (s *server) waitLeaveCreated(ctx context.Context, id string) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		v, err := s.b.InspectContainer(ctx, id)
		if err != nil {
			return err
		}
		if v.Container.State != model.StateCreated {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *server) containerLogs(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ref := r.PathValue("id")
	stdout, stderr := boolParam(r, "stdout"), boolParam(r, "stderr")
	if !stdout && !stderr {
		writeError(w, apiErr(model.ErrInvalid, "Bad parameters: you must choose at least one stream"))
		return
	}
	opts, withOpts, err := logOptions(r)
	if err != nil {
		writeError(w, err)
		return
	}
	lc, ok := s.b.(Lifecycle)
	if withOpts && !ok {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support logs --tail, --since, --until or --timestamps with this backend"))
		return
	}
	if _, err := s.b.InspectContainer(ctx, ref); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	mux := newStreamMux(w, func() error { return rc.Flush() })
	outW, errW := mux.stream(streamStdout), mux.stream(streamStderr)
	if !stdout {
		outW = discard
	}
	if !stderr {
		errW = discard
	}
	logs := func() error { return s.b.Logs(ctx, ref, outW, errW, opts.Follow) }
	if ok {
		logs = func() error { return lc.LogsWith(ctx, ref, outW, errW, opts) }
	}
	if err := logs(); err != nil {
		s.log.DebugContext(ctx, "api: logs stream ended", "container", ref, "err", err)
	}
}

func (s *server) containerRename(w http.ResponseWriter, r *http.Request) {
	if err := s.b.RenameContainer(r.Context(), r.PathValue("id"), r.URL.Query().Get("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseExtraHost parses an --add-host entry, NAME:IP or NAME=IP, where IP
// may be "host-gateway" (Docker's forms).
func parseExtraHost(s string) (model.ExtraHost, error) {
	name, ip, ok := strings.Cut(s, "=")
	if !ok {
		name, ip, ok = strings.Cut(s, ":")
	}
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t\n") {
		return model.ExtraHost{}, apiErr(model.ErrInvalid, "bad format for add-host: %q", s)
	}
	if ip == "host-gateway" {
		return model.ExtraHost{Name: name, HostGateway: true}, nil
	}
	a, err := netip.ParseAddr(strings.Trim(ip, "[]"))
	if err != nil {
		return model.ExtraHost{}, apiErr(model.ErrInvalid, "invalid IP address in add-host: %q", ip)
	}
	return model.ExtraHost{Name: name, Addr: a.Unmap()}, nil
}

// restartPolicyOf is the container's HostConfig.RestartPolicy ("no" when
// none).
func restartPolicyOf(c model.Container) container.RestartPolicy {
	if c.RestartPolicy.Name == "" {
		return container.RestartPolicy{Name: container.RestartPolicyDisabled}
	}
	return container.RestartPolicy{Name: container.RestartPolicyMode(c.RestartPolicy.Name), MaximumRetryCount: c.RestartPolicy.MaximumRetryCount}
}
