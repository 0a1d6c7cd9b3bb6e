package engine

import (
	"context"

	"github.com/vxnet/vxnet/internal/cluster"
	"github.com/vxnet/vxnet/internal/model"
)

// advertSource is where the engine half of the overlay peer controller
// reads advertisements: the cluster store, or a test's fake that delivers
// sets of remote endpoints without a second member.
type advertSource interface {
	// Adverts lists a network's advertisements and the store revision.
	Adverts(ctx context.Context, netID string) ([]cluster.Advert, int64, error)
	// WatchAdverts calls fn with the whole set on every change until ctx
	// ends.
	WatchAdverts(ctx context.Context, netID string, fromRev int64, fn func([]cluster.Advert, int64)) error
	// CheckAdverts keeps the advertisements that are valid together.
	CheckAdverts(ctx context.Context, n model.Network, ads []cluster.Advert) []cluster.Advert
	// FollowOwners keeps the owners of the network's global addresses,
	// which CheckAdverts judges against, until ctx ends.
	FollowOwners(ctx context.Context, netID string) error
}

var _ advertSource = (*cluster.Cluster)(nil)

// adverts returns the advertisement source (the cluster store unless a
// test set one).
func (e *Engine) adverts() advertSource {
	if e.opts.adverts != nil {
		return e.opts.adverts
	}
	return e.cluster()
}
