package engine

import (
	"github.com/vxnet/vxnet/internal/engine/peerctl"
)

// Hooks for the external tests (package engine_test), which build the
// engine on the fakes of enginetest.

// SetAdverts makes s the advertisement source instead of the cluster
// store.
func SetAdverts(o *Options, s peerctl.Source) { o.adverts = s }

// ApplyFirewall renders and applies the firewall now.
func ApplyFirewall(e *Engine) error { return e.applyFirewall() }

// RenameNetworkID gives network from the ID to in the view only.
func RenameNetworkID(e *Engine, from, to string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.networks[from]
	delete(e.networks, from)
	n.ID = to
	e.networks[to] = n
}

// PeerWatched says whether the peer controller watches a network's
// advertisements.
func PeerWatched(e *Engine, netID string) bool { return e.peers.Watched(netID) }
