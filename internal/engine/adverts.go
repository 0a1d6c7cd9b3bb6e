package engine

import (
	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/engine/peerctl"
)

var _ peerctl.Source = (*cluster.Cluster)(nil)

// adverts returns the advertisement source of the peer controller: the
// cluster store unless a test set one (Options.adverts), nil without one.
func (e *Engine) adverts() peerctl.Source {
	if e.opts.adverts != nil {
		return e.opts.adverts
	}
	if g := e.cluster(); g != nil {
		return g
	}
	return nil
}
