package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vxnet/vxnet/internal/model"
)

// HostEntry is one line of a container's /etc/hosts.
type HostEntry struct {
	Addr  netip.Addr
	Names []string
}

// RenderHosts renders /etc/hosts for a container: Docker's fixed header, the
// container itself, then every peer on its user-defined networks as
// "IP NAME NAME.NETWORK ALIAS ALIAS.NETWORK". Pure, so it is unit-tested.
func RenderHosts(self []HostEntry, peers []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	for _, set := range [][]HostEntry{self, peers} {
		for _, h := range set {
			fmt.Fprintf(&b, "%s\t%s\n", h.Addr, strings.Join(h.Names, " "))
		}
	}
	return b.Bytes()
}

// peersLocked computes the hosts entries a container sees: itself on each
// of its networks and every other local container on its user-defined ones.
func (e *Engine) peersLocked(ctrID string) []HostEntry {
	var out []HostEntry
	for _, own := range e.endpointsOfLocked(ctrID) {
		n, ok := e.networks[own.NetworkID]
		if !ok || n.Predefined || n.Name == GatewayBridge {
			continue
		}
		for _, ep := range e.endpointsOnLocked(n.ID) {
			if ep.ContainerID == ctrID {
				continue
			}
			out = append(out, HostEntry{Addr: ep.Addr.Addr(), Names: entryNames(ep, n.Name)})
		}
		out = append(out, e.remotePeersLocked(n)...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Addr.Less(out[j].Addr) })
	return out
}

func entryNames(ep model.Endpoint, network string) []string {
	names := []string{ep.Name, ep.Name + "." + network}
	for _, a := range ep.Aliases {
		names = append(names, a, a+"."+network)
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
		out = append(out, HostEntry{Addr: ep.Addr.Addr(), Names: dedupe(names)})
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

// refreshHosts rewrites /etc/hosts of every container on a network. The
// contents are computed under mu and written outside it; hostsMu keeps
// writers in order, so the last write reflects the last change.
func (e *Engine) refreshHosts(netID string) {
	e.hostsMu.Lock()
	defer e.hostsMu.Unlock()
	e.mu.Lock()
	var files []sandboxFiles
	done := map[string]bool{}
	for _, ep := range e.endpointsOnLocked(netID) {
		if done[ep.ContainerID] {
			continue
		}
		done[ep.ContainerID] = true
		if c, ok := e.containers[ep.ContainerID]; ok {
			files = append(files, e.sandboxFilesLocked(c))
		}
	}
	e.mu.Unlock()
	for _, f := range files {
		if err := e.writeSandboxFiles(f.c, f.sb, f.self, f.peers); err != nil {
			e.log.Warn("write hosts", "name", f.c.Name, "err", err)
		}
	}
}

// refreshContainerFiles rewrites one container's files.
func (e *Engine) refreshContainerFiles(ctrID string) {
	e.hostsMu.Lock()
	defer e.hostsMu.Unlock()
	e.mu.Lock()
	c, ok := e.containers[ctrID]
	var f sandboxFiles
	if ok {
		f = e.sandboxFilesLocked(c)
	}
	e.mu.Unlock()
	if ok {
		if err := e.writeSandboxFiles(f.c, f.sb, f.self, f.peers); err != nil {
			e.log.Warn("write hosts", "name", f.c.Name, "err", err)
		}
	}
}

// sandboxFiles is what a container's files are rendered from.
type sandboxFiles struct {
	c           model.Container
	sb          model.Sandbox
	self, peers []HostEntry
}

func (e *Engine) sandboxFilesLocked(c model.Container) sandboxFiles {
	return sandboxFiles{c: c, sb: e.sandboxes[c.ID], self: e.selfEntriesLocked(c), peers: e.peersLocked(c.ID)}
}

// writeSandboxFiles writes the container's hosts, resolv.conf and hostname.
// Files are rewritten in place: they are bind-mounted into the container,
// which pins the inode, so a rename would not be seen inside.
func (e *Engine) writeSandboxFiles(c model.Container, sb model.Sandbox, self, peers []HostEntry) error {
	dir := filepath.Join(e.filesDir(), c.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var hosts []byte
	if sb.HostNetwork {
		hosts, _ = os.ReadFile("/etc/hosts")
	} else {
		hosts = RenderHosts(self, peers)
	}
	files := map[string][]byte{
		"hosts":       hosts,
		"hostname":    []byte(c.Hostname + "\n"),
		"resolv.conf": resolvConf(),
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

// resolvConf is the host's resolv.conf without loopback nameservers, which
// cannot work from a container's namespace (Docker does the same).
func resolvConf() []byte {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil
	}
	return FilterResolvConf(data)
}

// FilterResolvConf drops nameserver lines pointing at loopback.
func FilterResolvConf(data []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				continue
			}
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes()
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
