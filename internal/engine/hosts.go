package engine

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/model"
)

// HostEntry is one line of a container's /etc/hosts.
type HostEntry struct {
	Addr  netip.Addr
	Names []string
}

// RenderHosts renders /etc/hosts for a container: Docker's fixed header, the
// container itself, then its legacy links (default bridge). Peers on
// user-defined networks are not listed: the embedded DNS server answers
// for them. Pure, so it is unit-tested.
func RenderHosts(self []HostEntry, links []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	for _, set := range [][]HostEntry{self, links} {
		for _, h := range set {
			fmt.Fprintf(&b, "%s\t%s\n", h.Addr, strings.Join(h.Names, " "))
		}
	}
	return b.Bytes()
}

// entryNames are an endpoint's names in a hosts file: NAME and ALIAS, and
// their NAME.NETWORK forms when the network's name can be part of a host
// name (Docker accepts network names with spaces).
func entryNames(ep model.Endpoint, network string) []string {
	qualify := validName.MatchString(network)
	names := []string{ep.Name}
	if qualify {
		names = append(names, ep.Name+"."+network)
	}
	for _, a := range ep.Aliases {
		names = append(names, a)
		if qualify {
			names = append(names, a+"."+network)
		}
	}
	return names
}

func (e *Engine) selfEntriesLocked(c model.Container) []HostEntry {
	var out []HostEntry
	for _, ep := range e.endpointsOfLocked(c.ID) {
		n := e.networks[ep.NetworkID]
		names := []string{c.Hostname}
		if !n.Predefined && n.Name != GatewayBridge {
			names = append(names, entryNames(ep, n.Name)...)
		}
		for _, a := range epAddrs(ep) {
			out = append(out, HostEntry{Addr: a, Names: dedupe(names)})
		}
	}
	return out
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// refreshContainerFiles rewrites the files (hosts, resolv.conf, hostname)
// of the given containers. The contents are computed under mu and written
// outside it; hostsMu keeps writers in order, so the last write reflects
// the last change. Peers' files are never rewritten for a container's
// change: on user-defined networks names come from the DNS server.
func (e *Engine) refreshContainerFiles(ctrIDs ...string) {
	e.hostsMu.Lock()
	defer e.hostsMu.Unlock()
	e.mu.Lock()
	var files []sandboxFiles
	for _, id := range ctrIDs {
		if c, ok := e.containers[id]; ok {
			files = append(files, e.sandboxFilesLocked(c))
		}
	}
	e.mu.Unlock()
	for _, f := range files {
		if err := e.writeSandboxFiles(f); err != nil {
			e.log.Warn("write sandbox files", "name", f.c.Name, "err", err)
		}
	}
}

// sandboxFiles is what a container's files are rendered from.
type sandboxFiles struct {
	c           model.Container
	sb          model.Sandbox
	self, links []HostEntry
	// embedded: resolv.conf points at the embedded DNS server.
	embedded bool
}

func (e *Engine) sandboxFilesLocked(c model.Container) sandboxFiles {
	return sandboxFiles{c: c, sb: e.sandboxes[c.ID], self: e.selfEntriesLocked(c), links: append(e.linkEntriesLocked(c), e.extraHostEntriesLocked(c)...),
		embedded: e.embeddedDNSLocked(c.ID)}
}

// writeSandboxFiles writes the container's hosts, resolv.conf and hostname.
// Files are rewritten in place: they are bind-mounted into the container,
// which pins the inode, so a rename would not be seen inside.
func (e *Engine) writeSandboxFiles(f sandboxFiles) error {
	c := f.c
	dir := filepath.Join(e.filesDir(), c.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var hosts []byte
	if f.sb.HostNetwork {
		hosts, _ = os.ReadFile("/etc/hosts")
		for _, h := range f.links { // --add-host entries
			hosts = fmt.Appendf(hosts, "%s\t%s\n", h.Addr, strings.Join(h.Names, " "))
		}
	} else {
		hosts = RenderHosts(f.self, f.links)
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	files := map[string][]byte{
		"hosts":    hosts,
		"hostname": []byte(c.Hostname + "\n"),
		"resolv.conf": dns.ResolvConf(hostResolv, f.embedded,
			dns.ResolvSettings{Servers: c.DNS, Search: c.DNSSearch, Options: c.DNSOptions}),
	}
	for name, data := range files {
		if err := writeInPlace(filepath.Join(dir, name), data); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

func writeInPlace(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil // unchanged: peers churn often, files rarely change
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mounts are the per-container files bind-mounted into the container.
func (e *Engine) mounts(id string) []Mount {
	dir := filepath.Join(e.filesDir(), id)
	return []Mount{
		{Source: filepath.Join(dir, "hosts"), Destination: "/etc/hosts"},
		{Source: filepath.Join(dir, "resolv.conf"), Destination: "/etc/resolv.conf"},
		{Source: filepath.Join(dir, "hostname"), Destination: "/etc/hostname"},
	}
}
