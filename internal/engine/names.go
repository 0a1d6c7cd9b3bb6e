package engine

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/moby/moby/api/types/events"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// Names: containers on user-defined bridge and overlay networks resolve
// each other through the embedded DNS server (internal/dns) at
// 127.0.0.11 in their own namespace; their /etc/hosts holds only
// themselves. The engine hands the server the whole desired state on
// every change (local endpoints, remote advertisements, containers); the
// server swaps it in without I/O and opens or closes sockets on its own
// goroutine, so nothing here waits on the kernel. The default bridge
// keeps Docker's behaviour: host resolvers, /etc/hosts, --link entries.

// dnsNetwork: networks whose names the embedded server answers.
func dnsNetwork(n model.Network) bool {
	return !n.Predefined && n.Name != GatewayBridge && (n.Driver == "bridge" || n.Driver == "overlay")
}

// embeddedDNSLocked: the container's resolv.conf points at 127.0.0.11.
func (e *Engine) embeddedDNSLocked(ctrID string) bool {
	if e.opts.DNS == nil || e.sandboxes[ctrID].NetnsPath == "" {
		return false
	}
	for _, ep := range e.endpointsOfLocked(ctrID) {
		if dnsNetwork(e.networks[ep.NetworkID]) {
			return true
		}
	}
	return false
}

// namesChanged pushes the names to the DNS server and rewrites the files
// (hosts, resolv.conf) of the given containers, whose own endpoints
// changed. Peers' files are not touched: their names come from the
// server. Called without mu.
func (e *Engine) namesChanged(ctrIDs ...string) {
	e.syncDNS()
	e.refreshContainerFiles(ctrIDs...)
}

// syncDNS hands the DNS server its whole desired state. Set does no I/O,
// so it is called under mu: the last Set reflects the last change.
func (e *Engine) syncDNS() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.syncDNSLocked()
}

func (e *Engine) syncDNSLocked() {
	if e.opts.DNS == nil {
		return
	}
	e.opts.DNS.Set(e.dnsConfigLocked())
}

func (e *Engine) dnsConfigLocked() dns.Config {
	var cfg dns.Config
	byNet := map[string][]dns.Record{}
	for _, ep := range e.endpoints {
		n, ok := e.networks[ep.NetworkID]
		if !ok || !dnsNetwork(n) {
			continue
		}
		names := append([]string{ep.Name}, ep.Aliases...)
		if len(ep.ContainerID) >= 12 {
			names = append(names, ep.ContainerID[:12])
		}
		byNet[n.ID] = append(byNet[n.ID], dns.Record{Names: names, Addrs: epAddrs(ep)})
	}
	for id, n := range e.networks {
		if !dnsNetwork(n) {
			continue
		}
		recs := byNet[id]
		if n.Scope == model.ScopeGlobal {
			for _, a := range e.peers.Known(id) {
				if a.NodeID == e.opts.NodeID || a.Name == "" || !(a.IP.IsValid() || a.IP6.IsValid()) {
					continue
				}
				names := append([]string{a.Name}, a.Aliases...)
				if a.ContainerID != "" {
					names = append(names, a.ContainerID[:12])
				}
				var addrs []netip.Addr
				for _, x := range []netip.Addr{a.IP, a.IP6} {
					if x.IsValid() {
						addrs = append(addrs, x)
					}
				}
				recs = append(recs, dns.Record{Names: names, Addrs: addrs})
			}
		}
		if len(recs) == 0 {
			continue
		}
		cfg.Networks = append(cfg.Networks, dns.Network{ID: id, Name: n.Name, Internal: n.Internal, Records: recs})
	}
	for id, c := range e.containers {
		if !e.embeddedDNSLocked(id) {
			continue
		}
		sb := dns.Sandbox{ID: id, NetnsPath: e.sandboxes[id].NetnsPath}
		for _, ep := range e.endpointsOfLocked(id) {
			if dnsNetwork(e.networks[ep.NetworkID]) {
				sb.Networks = append(sb.Networks, ep.NetworkID)
			}
		}
		sb.Extra = e.linkRecordsLocked(c, sb.Networks)
		for _, a := range c.DNS {
			sb.Upstreams = append(sb.Upstreams, netip.AddrPortFrom(a, 53))
		}
		cfg.Sandboxes = append(cfg.Sandboxes, sb)
	}
	// Docker's containers: Docker's resolver forwards what it does not
	// know to dns.DockerAddr in the container's namespace.
	for _, x := range e.externals {
		if x.SandboxKey == "" || !dnsNetwork(e.networks[x.NetworkID]) {
			continue
		}
		cfg.Sandboxes = append(cfg.Sandboxes, dns.Sandbox{ID: x.ID, NetnsPath: x.SandboxKey, Addr: dns.DockerAddr, Networks: []string{x.NetworkID}})
	}
	sort.Slice(cfg.Networks, func(i, j int) bool { return cfg.Networks[i].ID < cfg.Networks[j].ID })
	return cfg
}

// linkRecordsLocked: a legacy --link on user-defined networks is an
// alias only the linking container resolves, to the linked container's
// addresses on the networks they share (Docker's behaviour).
func (e *Engine) linkRecordsLocked(c model.Container, nets []string) []dns.Record {
	var out []dns.Record
	for _, l := range c.Links {
		name, alias := splitLink(l)
		other, err := e.containerLocked(name)
		if err != nil {
			continue
		}
		var addrs []netip.Addr
		for _, ep := range e.endpointsOfLocked(other.ID) {
			for _, id := range nets {
				if ep.NetworkID == id {
					addrs = append(addrs, epAddrs(ep)...)
				}
			}
		}
		if len(addrs) > 0 {
			out = append(out, dns.Record{Names: []string{alias}, Addrs: addrs})
		}
	}
	return out
}

// dnsReady waits until the DNS server listens in the container's
// namespace (before its process starts, so its first lookup is answered).
func (e *Engine) dnsReady(ctx context.Context, ctrID string) error {
	e.mu.Lock()
	embedded := e.embeddedDNSLocked(ctrID)
	e.mu.Unlock()
	if !embedded {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return e.opts.DNS.Ready(ctx, ctrID)
}

// linkEntriesLocked are the /etc/hosts lines of a container's legacy
// links on the default bridge: "IP ALIAS HOSTNAME NAME" of each linked
// container.
func (e *Engine) linkEntriesLocked(c model.Container) []HostEntry {
	var out []HostEntry
	for _, l := range c.Links {
		name, alias := splitLink(l)
		other, err := e.containerLocked(name)
		if err != nil {
			continue
		}
		for _, ep := range e.endpointsOfLocked(other.ID) {
			if n := e.networks[ep.NetworkID]; n.Name == model.NetBridge && n.Predefined {
				out = append(out, HostEntry{Addr: ep.Addr.Addr(), Names: dedupe([]string{alias, other.Hostname, other.Name})})
			}
		}
	}
	return out
}

// extraHostEntriesLocked are the --add-host lines; host-gateway is the
// default bridge's gateway, as Docker's default.
func (e *Engine) extraHostEntriesLocked(c model.Container) []HostEntry {
	var out []HostEntry
	for _, x := range c.ExtraHosts {
		a := x.Addr
		if x.HostGateway {
			a = e.opts.BridgeIP.Addr()
		}
		out = append(out, HostEntry{Addr: a, Names: []string{x.Name}})
	}
	return out
}

// splitLink splits --link NAME[:ALIAS]; the alias defaults to the name.
func splitLink(l string) (name, alias string) {
	for i := 0; i < len(l); i++ {
		if l[i] == ':' {
			return l[:i], l[i+1:]
		}
	}
	return l, l
}

// checkResolvSettings applies Docker's rules to --dns-search and
// --dns-option (--dns is parsed as addresses at the API edge).
func checkResolvSettings(req api.ContainerCreate) error {
	for _, d := range req.DNSSearch {
		if d == "." {
			continue
		}
		if _, ok := mdns.IsDomainName(d); !ok || strings.ContainsAny(d, " \t") || len(d) > 255 {
			return errf(model.ErrInvalid, "%s is not a valid domain", d)
		}
	}
	for _, o := range req.DNSOptions {
		if o == "" || strings.ContainsAny(o, " \t\n") {
			return errf(model.ErrInvalid, "invalid DNS option %q", o)
		}
	}
	for _, a := range req.DNS {
		if !a.IsValid() {
			return errf(model.ErrInvalid, "invalid DNS server address")
		}
	}
	return nil
}

// checkLinksLocked resolves --link NAME[:ALIAS] to existing containers and
// returns the links as "ID:ALIAS" with the linked container's ID.
func (e *Engine) checkLinksLocked(n model.Network, links []string) ([]string, error) {
	if len(links) == 0 {
		return nil, nil
	}
	if n.Driver == "host" {
		return nil, errf(model.ErrInvalid, "conflicting options: host type networking can't be used with links. This would result in undefined behavior")
	}
	var out []string
	for _, l := range links {
		name, alias := splitLink(strings.TrimPrefix(l, "/"))
		alias = strings.TrimPrefix(alias, "/")
		if name == "" || alias == "" || !validName.MatchString(alias) {
			return nil, errf(model.ErrInvalid, "invalid link %q: want NAME[:ALIAS]", l)
		}
		other, err := e.containerLocked(name)
		if err != nil {
			return nil, errf(model.ErrInvalid, "could not get container for %s", name)
		}
		out = append(out, other.ID+":"+alias) // by ID: a rename keeps the link
	}
	return out, nil
}

// RenameContainer gives a container a new name: its endpoints, its
// advertisements on overlay networks, the DNS server's names and the hosts
// entries of containers linking to it follow.
func (e *Engine) RenameContainer(ctx context.Context, ref, newName string) error {
	newName = strings.TrimPrefix(newName, "/")
	if strings.TrimPrefix(ref, "/") == "" || newName == "" {
		return errf(model.ErrInvalid, "Neither old nor new names may be empty")
	}
	if !validName.MatchString(newName) {
		return errf(model.ErrInvalid, "Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", newName)
	}
	c, unlock, err := e.lockContainer(ref)
	if err != nil {
		return err
	}
	defer unlock()
	if c.Name == newName {
		return errf(model.ErrInvalid, "Renaming a container with the same name as its current name")
	}
	e.mu.Lock()
	for _, o := range e.containers {
		if o.Name == newName {
			e.mu.Unlock()
			return errf(model.ErrConflict, "Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+newName, o.ID)
		}
	}
	if e.pendingNames[newName] {
		e.mu.Unlock()
		return errf(model.ErrConflict, "Conflict. The container name %q is already in use by a container being created. You have to remove (or rename) that container to be able to reuse that name.", "/"+newName)
	}
	e.pendingNames[newName] = true
	eps := e.endpointsOfLocked(c.ID)
	ids := []string{c.ID}
	for id, o := range e.containers {
		for _, l := range o.Links {
			if name, _ := splitLink(l); name == c.ID {
				ids = append(ids, id)
				break
			}
		}
	}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		delete(e.pendingNames, newName)
		e.mu.Unlock()
	}()
	old := c.Name
	c.Name = newName
	for i := range eps {
		eps[i].Name = newName
	}
	err = e.opts.Store.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Containers, c.ID, c); err != nil {
			return err
		}
		for _, ep := range eps {
			if err := tx.Put(store.Endpoints, ep.ID, ep); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record container: %w", err)
	}
	e.mu.Lock()
	if cur, ok := e.containers[c.ID]; ok {
		cur.Name = newName
		e.containers[c.ID] = cur
	}
	for _, ep := range eps {
		if cur, ok := e.endpoints[ep.ID]; ok {
			cur.Name = newName
			e.endpoints[ep.ID] = cur
		}
	}
	e.mu.Unlock()
	nets := e.networksOf(eps)
	for _, ep := range eps {
		if n := nets[ep.NetworkID]; n.Scope == model.ScopeGlobal && e.cluster() != nil {
			e.advertise(ctx, n, ep) // peers' DNS follows the advertisement
		}
	}
	e.namesChanged(ids...)
	e.log.Info("container renamed", "old", old, "new", newName, "id", c.ID[:12])
	c.Name = newName
	e.containerEvent(c, events.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}
