package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

// Sweep deletes this driver's leftovers that belong to no known network or
// endpoint: overlay namespaces under ExecRoot of unknown networks, veths
// (marked "vxnet:ov:<net>:<ep>") of unknown endpoints, overlay namespaces
// left with no container port, and VXLAN devices carrying our mark that a
// crash stranded in the host namespace. Objects without our marks are
// never touched. Run it at daemon start, before the first Join.
func (d *Driver) Sweep(ctx context.Context, networks []model.Network, endpoints []model.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	known := map[string]model.Network{}
	for _, n := range networks {
		known[short(n.ID, 12)] = n
	}
	knownEP := map[string]bool{}
	for _, ep := range endpoints {
		knownEP[ep.ID] = true
	}
	var errs []error
	dir := filepath.Join(d.opts.ExecRoot, "netns")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("overlay: sweep: %w", err))
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "ov-") {
			continue
		}
		path := filepath.Join(dir, name)
		n, ok := known[strings.TrimPrefix(name, "ov-")]
		if !ok {
			d.log.Info("sweeping overlay namespace of unknown network", "path", path)
			errs = append(errs, d.teardownPath(path, ""))
			continue
		}
		if err := d.sweepEndpoints(path, n, knownEP); err != nil {
			errs = append(errs, err)
			continue
		}
		ports, err := d.containerPorts(path)
		if err != nil {
			errs = append(errs, err)
		} else if ports == 0 {
			d.log.Info("sweeping overlay namespace without containers", "path", path)
			d.peers.Forget(n.ID)
			errs = append(errs, d.teardownPath(path, n.ID))
		}
	}
	// Nothing of ours stays in the host namespace after a Join completes.
	errs = append(errs, d.deleteHostVxlans(func(string) bool { return true }))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("overlay: sweep: %w", err)
	}
	return nil
}

// sweepEndpoints deletes the veths of unknown endpoints in the overlay
// namespace at path.
func (d *Driver) sweepEndpoints(path string, n model.Network, knownEP map[string]bool) error {
	if !netns.IsPinned(path) {
		return nil
	}
	h, err := netns.Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("overlay: sweep: list links of %s: %w", path, err)
	}
	prefix := netAlias(n.ID) + ":"
	var errs []error
	for _, l := range links {
		alias := l.Attrs().Alias
		if l.Type() != "veth" || !strings.HasPrefix(alias, prefix) || knownEP[strings.TrimPrefix(alias, prefix)] {
			continue
		}
		d.log.Info("sweeping veth of unknown endpoint", "network", short(n.ID, 12), "link", l.Attrs().Name)
		if err := h.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("overlay: sweep: delete %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
