package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/network"

	"github.com/vxnet/vxnet/internal/model"
)

// networkInspect is Docker's network object plus vxnet's verbose detail.
type networkInspect struct {
	network.Inspect
	VXNet map[string]any `json:"VXNet,omitempty"`
}

func (s *server) networkList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := f.validate("driver", "name", "id", "label", "scope", "type", "dangling"); err != nil {
		writeError(w, err)
		return
	}
	nets, err := s.b.ListNetworks(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	out := []network.Summary{}
	for _, nv := range nets {
		ok, err := matchNetwork(f, nv)
		if err != nil {
			writeError(w, err)
			return
		}
		if ok {
			out = append(out, network.Summary{Network: toDockerNetwork(nv.Network)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// matchNetwork applies Docker's network filters: name and id match a
// substring or regular expression, driver and scope exactly, label as key or
// key=value, type is custom or builtin, dangling is true or false.
func matchNetwork(f filters, nv NetworkView) (bool, error) {
	n := nv.Network
	if !f.matchAny("name", n.Name, true) || !f.matchAny("id", n.ID, true) {
		return false, nil
	}
	if !f.matchAny("driver", n.Driver, false) || !f.matchAny("scope", n.Scope, false) {
		return false, nil
	}
	if !f.matchLabels(n.Labels) {
		return false, nil
	}
	if types, ok := f["type"]; ok {
		match := false
		for t := range types {
			switch t {
			case "custom":
				match = match || !n.Predefined
			case "builtin":
				match = match || n.Predefined
			default:
				return false, apiErr(model.ErrInvalid, "invalid filter: 'type'='%s'", t)
			}
		}
		if !match {
			return false, nil
		}
	}
	if d, ok := f["dangling"]; ok {
		match := false
		for v := range d {
			switch strings.ToLower(v) {
			case "true", "1":
				match = match || (!n.Predefined && len(nv.Endpoints) == 0)
			case "false", "0":
				match = match || n.Predefined || len(nv.Endpoints) > 0
			default:
				return false, apiErr(model.ErrInvalid, "invalid filter: 'dangling'='%s'", v)
			}
		}
		if !match {
			return false, nil
		}
	}
	return true, nil
}

func (s *server) networkInspect(w http.ResponseWriter, r *http.Request) {
	verbose := boolParam(r, "verbose")
	nv, err := s.b.InspectNetwork(r.Context(), r.PathValue("id"), verbose)
	if err != nil {
		writeError(w, err)
		return
	}
	out := networkInspect{Inspect: toDockerInspect(nv)}
	if verbose {
		out.VXNet = nv.Verbose
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *server) networkCreate(w http.ResponseWriter, r *http.Request) {
	if err := checkJSONContentType(r); err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeNetworkCreate(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, err)
		return
	}
	n, err := s.b.CreateNetwork(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: n.ID})
}

// decodeNetworkCreate decodes Docker's network create request and rejects
// what vxnet does not do (IPv6, swarm ingress, config-only networks, other
// IPAM drivers) with ErrInvalid.
func decodeNetworkCreate(body io.Reader) (NetworkCreate, error) {
	raw, err := io.ReadAll(body)
	if err != nil {
		return NetworkCreate{}, apiErr(model.ErrInvalid, "read request: %v", err)
	}
	if err := unparsableIPAM(raw); err != nil {
		return NetworkCreate{}, err
	}
	var req network.CreateRequest
	if err := decodeJSONBody(bytes.NewReader(raw), &req, false); err != nil {
		return NetworkCreate{}, err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		return NetworkCreate{}, apiErr(model.ErrInvalid, "network name cannot be empty")
	}
	switch {
	case req.EnableIPv4 != nil && !*req.EnableIPv4 && (req.EnableIPv6 == nil || !*req.EnableIPv6):
		return NetworkCreate{}, apiErr(model.ErrInvalid, "IPv4 or IPv6 must be enabled")
	case req.Ingress:
		return NetworkCreate{}, apiErr(model.ErrInvalid, "vxnet does not support ingress networks")
	case req.ConfigOnly || req.ConfigFrom != nil:
		return NetworkCreate{}, apiErr(model.ErrInvalid, "vxnet does not support config-only networks")
	case req.Scope != "" && req.Scope != model.ScopeLocal && req.Scope != model.ScopeGlobal:
		return NetworkCreate{}, apiErr(model.ErrInvalid, "invalid network scope %q", req.Scope)
	}
	out := NetworkCreate{
		Name:        name,
		Driver:      req.Driver,
		Internal:    req.Internal,
		Attachable:  req.Attachable,
		EnableIPv6:  req.EnableIPv6 != nil && *req.EnableIPv6,
		DisableIPv4: req.EnableIPv4 != nil && !*req.EnableIPv4,
		Labels:      maps.Clone(req.Labels),
		Options:     maps.Clone(req.Options),
	}
	if req.IPAM != nil {
		if d := req.IPAM.Driver; d != "" && d != "default" {
			return NetworkCreate{}, apiErr(model.ErrInvalid, "vxnet supports only the default IPAM driver, not %q", d)
		}
		for _, c := range req.IPAM.Config {
			if !c.Subnet.IsValid() {
				return NetworkCreate{}, apiErr(model.ErrInvalid, "invalid IPAM config: a subnet is required")
			}
			out.IPAM = append(out.IPAM, model.IPAMConfig{
				Subnet:     c.Subnet,
				IPRange:    c.IPRange,
				Gateway:    c.Gateway,
				AuxAddress: maps.Clone(c.AuxAddress),
			})
		}
	}
	return out, nil
}

func (s *server) networkRemove(w http.ResponseWriter, r *http.Request) {
	if err := s.b.RemoveNetwork(r.Context(), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) networkPrune(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if len(f) > 0 {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support network prune filters"))
		return
	}
	names, err := s.b.PruneNetworks(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if names == nil {
		names = []string{}
	}
	writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: names})
}

func (s *server) networkConnect(w http.ResponseWriter, r *http.Request) {
	var req network.ConnectRequest
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if strings.TrimSpace(req.Container) == "" {
		writeError(w, apiErr(model.ErrInvalid, "container name or ID is required"))
		return
	}
	es, err := endpointRequest(req.EndpointConfig)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.b.ConnectNetwork(r.Context(), r.PathValue("id"), req.Container, es); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *server) networkDisconnect(w http.ResponseWriter, r *http.Request) {
	var req network.DisconnectRequest
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if strings.TrimSpace(req.Container) == "" {
		writeError(w, apiErr(model.ErrInvalid, "container name or ID is required"))
		return
	}
	if err := s.b.DisconnectNetwork(r.Context(), r.PathValue("id"), req.Container, req.Force); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// endpointRequest turns Docker's endpoint settings (create or connect)
// into the Backend's; a setting vxnet does not implement is refused by
// name, as for create.
func endpointRequest(es *network.EndpointSettings) (EndpointRequest, error) {
	var ep EndpointRequest
	if es == nil {
		return ep, nil
	}
	for _, f := range setFields("NetworkingConfig.EndpointsConfig", reflect.ValueOf(*es)) {
		if !supportedCreateFields[f] && !endpointOperational[f] {
			return ep, apiErr(model.ErrInvalid, "vxnet does not support %s", f)
		}
	}
	if es.IPAMConfig != nil {
		ep.IP = es.IPAMConfig.IPv4Address
		ep.IP6 = es.IPAMConfig.IPv6Address
		if ep.IP.IsValid() && !ep.IP.Is4() {
			return ep, apiErr(model.ErrInvalid, "invalid IPv4 address: %s", ep.IP)
		}
		if ep.IP6.IsValid() && (!ep.IP6.Is6() || ep.IP6.Is4In6()) {
			return ep, apiErr(model.ErrInvalid, "invalid IPv6 address: %s", ep.IP6)
		}
		for _, a := range es.IPAMConfig.LinkLocalIPs {
			if !a.IsValid() || !a.IsLinkLocalUnicast() {
				return ep, apiErr(model.ErrInvalid, "invalid link-local IP address: %s", a)
			}
			ep.LinkLocalIPs = append(ep.LinkLocalIPs, a.Unmap())
		}
	}
	ep.Aliases = slices.Clone(es.Aliases)
	if len(es.MacAddress) > 0 {
		mac := net.HardwareAddr(es.MacAddress)
		if len(mac) != 6 || mac[0]&1 != 0 || bytes.Equal(mac, make([]byte, 6)) {
			return ep, apiErr(model.ErrInvalid, "invalid MAC address: %s", mac)
		}
		ep.MAC = slices.Clone(mac)
	}
	for k, v := range es.DriverOpts {
		if k != model.OptEndpointIfName {
			return ep, apiErr(model.ErrInvalid, "vxnet does not support the endpoint driver option %s", k)
		}
		ep.IfName = v
	}
	ep.GwPriority = es.GwPriority
	return ep, nil
}

// endpointOperational are endpoint fields inspect reports; a client that
// sends them back (docker container create from an inspect) is not asking
// for anything, and vxnet ignores them as Docker does.
var endpointOperational = map[string]bool{
	"NetworkingConfig.EndpointsConfig.NetworkID":           true,
	"NetworkingConfig.EndpointsConfig.EndpointID":          true,
	"NetworkingConfig.EndpointsConfig.Gateway":             true,
	"NetworkingConfig.EndpointsConfig.IPAddress":           true,
	"NetworkingConfig.EndpointsConfig.IPPrefixLen":         true,
	"NetworkingConfig.EndpointsConfig.IPv6Gateway":         true,
	"NetworkingConfig.EndpointsConfig.GlobalIPv6Address":   true,
	"NetworkingConfig.EndpointsConfig.GlobalIPv6PrefixLen": true,
	"NetworkingConfig.EndpointsConfig.DNSNames":            true,
}

func toDockerNetwork(n model.Network) network.Network {
	out := network.Network{
		Name:       n.Name,
		ID:         n.ID,
		Created:    n.Created,
		Scope:      n.Scope,
		Driver:     n.Driver,
		EnableIPv4: !n.DisableIPv4,
		EnableIPv6: n.EnableIPv6,
		IPAM:       network.IPAM{Driver: "default", Options: map[string]string{}, Config: []network.IPAMConfig{}},
		Internal:   n.Internal,
		Attachable: n.Attachable,
		Options:    map[string]string{},
		Labels:     map[string]string{},
	}
	if out.Scope == "" {
		out.Scope = model.ScopeLocal
	}
	maps.Copy(out.Options, n.Options)
	maps.Copy(out.Labels, n.Labels)
	for _, c := range n.IPAM {
		out.IPAM.Config = append(out.IPAM.Config, network.IPAMConfig{
			Subnet:     c.Subnet,
			IPRange:    c.IPRange,
			Gateway:    c.Gateway,
			AuxAddress: maps.Clone(c.AuxAddress),
		})
	}
	return out
}

func toDockerInspect(nv NetworkView) network.Inspect {
	out := network.Inspect{
		Network:    toDockerNetwork(nv.Network),
		Containers: map[string]network.EndpointResource{},
	}
	for _, ep := range nv.Endpoints {
		out.Containers[ep.ContainerID] = network.EndpointResource{
			Name:        ep.Name,
			EndpointID:  ep.ID,
			MacAddress:  network.HardwareAddr(ep.MAC),
			IPv4Address: ep.Addr,
			IPv6Address: ep.Addr6,
		}
	}
	return out
}

// filters is Docker's filter set: term -> values.
type filters map[string]map[string]bool

// parseFilters decodes Docker's filters query parameter, in either the
// current {"term":{"value":true}} form or the old {"term":["value"]} form.
func parseFilters(s string) (filters, error) {
	f := filters{}
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	if err := json.Unmarshal([]byte(s), (*map[string]map[string]bool)(&f)); err == nil {
		return f, nil
	}
	var old map[string][]string
	if err := json.Unmarshal([]byte(s), &old); err != nil {
		return nil, apiErr(model.ErrInvalid, "invalid filters: %s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	for k, vs := range old {
		f[k] = map[string]bool{}
		for _, v := range vs {
			f[k][v] = true
		}
	}
	return f, nil
}

// supported refuses a term outside terms, naming it as one vxnet does not
// support (what: "image prune", "volume"): for terms Docker has and vxnet
// does not implement, where validate's "invalid filter" would mislead.
func (f filters) supported(what string, terms ...string) error {
	for k := range f {
		if !slices.Contains(terms, k) {
			return apiErr(model.ErrInvalid, "vxnet does not support the %s filter %q", what, k)
		}
	}
	return nil
}

// is reports whether a boolean term holds one of vals ("true", "1").
func (f filters) is(term string, vals ...string) bool {
	for _, v := range vals {
		if f[term][v] {
			return true
		}
	}
	return false
}

func (f filters) validate(terms ...string) error {
	for k := range f {
		if !slices.Contains(terms, k) {
			return apiErr(model.ErrInvalid, "invalid filter '%s'", k)
		}
	}
	return nil
}

// matchAny reports whether s matches one of the term's values, or true when
// the term is absent. With fuzzy, a value also matches as a regular
// expression (which includes any substring without metacharacters).
func (f filters) matchAny(term, s string, fuzzy bool) bool {
	vals, ok := f[term]
	if !ok || len(vals) == 0 {
		return true
	}
	for v := range vals {
		if v == s {
			return true
		}
		if fuzzy {
			if strings.Contains(s, v) {
				return true
			}
			if re, err := regexp.Compile(v); err == nil && re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// matchLabels: every label filter value ("key" or "key=value") must hold.
func (f filters) matchLabels(labels map[string]string) bool {
	for v := range f["label"] {
		k, want, hasVal := strings.Cut(v, "=")
		got, ok := labels[k]
		if !ok || (hasVal && got != want) {
			return false
		}
	}
	return true
}

// unparsableIPAM words the IPAM addresses of a network create request that
// do not parse as dockerd does ("invalid network config: invalid subnet X:
// invalid CIDR block notation"), before the typed decoding would call
// them bad JSON. Several problems are listed as "* a * b" (dockerd puts
// them on lines of their own).
func unparsableIPAM(raw []byte) error {
	var req struct {
		IPAM *struct {
			Config []struct {
				Subnet, IPRange, Gateway string
				AuxAddress               map[string]string
			}
		}
	}
	if json.Unmarshal(raw, &req) != nil || req.IPAM == nil {
		return nil // the typed decoding reports it
	}
	var errs []string
	for _, cfg := range req.IPAM.Config {
		if _, err := netip.ParsePrefix(cfg.Subnet); cfg.Subnet != "" && err != nil {
			errs = append(errs, fmt.Sprintf("invalid subnet %s: invalid CIDR block notation", cfg.Subnet))
			continue
		}
		if _, err := netip.ParsePrefix(cfg.IPRange); cfg.IPRange != "" && err != nil {
			errs = append(errs, fmt.Sprintf("invalid ip-range %s: invalid CIDR block notation", cfg.IPRange))
		}
		if _, err := netip.ParseAddr(cfg.Gateway); cfg.Gateway != "" && err != nil {
			errs = append(errs, fmt.Sprintf("invalid gateway %s: invalid address", cfg.Gateway))
		}
		for _, name := range slices.Sorted(maps.Keys(cfg.AuxAddress)) {
			if _, err := netip.ParseAddr(cfg.AuxAddress[name]); err != nil {
				errs = append(errs, fmt.Sprintf("invalid auxiliary address %s: invalid address", name))
			}
		}
	}
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return apiErr(model.ErrInvalid, "invalid network config: %s", errs[0])
	}
	return apiErr(model.ErrInvalid, "invalid network config: * %s", strings.Join(errs, " * "))
}
