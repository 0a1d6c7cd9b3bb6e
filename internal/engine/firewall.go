package engine

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/driver/bridge"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
)

// The firewall is a pure function of the engine's state (RenderFirewall),
// applied outside mu with the engine's own context, so a client that hangs
// up cannot cancel a firewall update half-way. Applies are serialised by
// firewallApplier.mu and each renders the state current when it runs, so
// the last apply always reflects the last change. A failed apply is
// returned to the request that caused it, shown in /info, and retried in
// the background until it succeeds.
//
// Most changes leave the rendered config as it was (a container without
// published ports, another endpoint of a host already allowed on the
// VXLAN port), and each real apply execs nft with the whole table: an
// apply whose config equals the one last applied successfully is skipped.
// It is done anyway once the last real apply is older than
// firewallRefresh, so a table changed behind vxnet's back is put right
// again, as any change used to do.

type firewallApplier struct {
	mu sync.Mutex // serialises applies; taken before Engine.mu

	stateMu  sync.Mutex
	lastErr  error
	lastAt   time.Time
	retrying bool

	// applied is the config of the last successful apply, at appliedAt
	// (monotonic); nil after a failure (the kernel's state is unknown).
	// Under mu.
	applied   *firewall.Config
	appliedAt time.Time
}

// firewallRefresh is how old the last real apply may be for an unchanged
// config to be skipped.
const firewallRefresh = 30 * time.Second

// RenderFirewall is the desired firewall for a set of networks: every
// bridge network's isolation and masquerade, and (in cluster mode) the
// VXLAN port open only to allowed VTEPs. networks must be in a stable
// order (creation time).
func RenderFirewall(networks []model.Network, cluster bool, vxlanPort int, vteps []firewall.Network) firewall.Config {
	var cfg firewall.Config
	for _, n := range networks {
		if n.Driver != "bridge" {
			continue
		}
		f := firewall.Network{ID: n.ID, Bridge: bridge.BridgeName(n), Internal: n.Internal,
			ICC: bridgeOpt(n, model.OptICC, true), Masquerade: bridgeOpt(n, model.OptMasquerade, true)}
		for _, c := range n.IPAM {
			f.Subnets = append(f.Subnets, c.Subnet)
		}
		cfg.Networks = append(cfg.Networks, f)
	}
	if cluster {
		cfg.VXLANPort = vxlanPort
	}
	return cfg
}

// firewallConfigLocked renders the desired firewall from the view.
func (e *Engine) firewallConfigLocked() firewall.Config {
	cfg := RenderFirewall(e.sortedNetworksLocked(), false, 0, nil)
	e.overlayFirewallLocked(&cfg)
	cfg.ControlPorts = e.opts.ControlPorts
	e.portsFirewallLocked(&cfg)
	return cfg
}

// applyFirewall renders the firewall from the current state and applies
// it. The error is for the request that caused the change.
func (e *Engine) applyFirewall() error {
	if e.opts.Firewall == nil {
		return nil
	}
	e.fw.mu.Lock()
	defer e.fw.mu.Unlock()
	e.mu.Lock()
	cfg := e.firewallConfigLocked()
	proxies := e.proxiesLocked()
	e.mu.Unlock()
	if a := e.fw.applied; a != nil && time.Since(e.fw.appliedAt) < firewallRefresh && reflect.DeepEqual(*a, cfg) {
		e.reconcileProxies(proxies)
		return nil
	}
	err := e.opts.Firewall.Apply(e.ctx, cfg)
	if err == nil {
		e.fw.applied, e.fw.appliedAt = &cfg, time.Now()
	} else {
		e.fw.applied = nil
	}
	e.reconcileProxies(proxies)
	if err != nil {
		err = fmt.Errorf("firewall: apply: %w", err)
	}
	e.fw.stateMu.Lock()
	e.fw.lastErr, e.fw.lastAt = err, e.now()
	retry := err != nil && !e.fw.retrying && e.ctx.Err() == nil
	if retry {
		e.fw.retrying = true
	}
	e.fw.stateMu.Unlock()
	if err != nil {
		e.log.Error("apply firewall", "err", err)
	}
	if retry {
		e.wg.Add(1)
		go e.retryFirewall()
	}
	return err
}

// retryFirewall re-applies a failed firewall after a pause; a new failure
// schedules the next retry.
func (e *Engine) retryFirewall() {
	defer e.wg.Done()
	select {
	case <-e.ctx.Done():
		return
	case <-time.After(2 * time.Second):
	}
	e.fw.stateMu.Lock()
	e.fw.retrying = false
	failing := e.fw.lastErr != nil
	e.fw.stateMu.Unlock()
	if failing {
		e.applyFirewall()
	}
}

// firewallStatus is the last apply's error ("" when it succeeded).
func (e *Engine) firewallStatus() string {
	e.fw.stateMu.Lock()
	defer e.fw.stateMu.Unlock()
	if e.fw.lastErr == nil {
		return ""
	}
	return fmt.Sprintf("%v (at %s; retrying)", e.fw.lastErr, e.fw.lastAt.Format(time.RFC3339))
}
