package engine

import (
	"encoding/json"
	"errors"
	"net/netip"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

// LocalIPAM adapts an ipam.Allocator to the engine's IPAM, persisting each
// network's subnets (allocations and serial cursor) as JSON.
func LocalIPAM(a *ipam.Allocator) IPAM { return localIPAM{a} }

type localIPAM struct{ a *ipam.Allocator }

func (l localIPAM) RequestPool(netID string, cfgs []model.IPAMConfig, routes []netip.Prefix) ([]model.IPAMConfig, error) {
	out, err := l.a.RequestPool(netID, cfgs, routes)
	return out, ipamClass(err)
}

// ipamClass gives ipam's errors the HTTP classes Docker uses for them.
func ipamClass(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ipam.ErrPoolOverlap), errors.Is(err, ipam.ErrAddressInUse), errors.Is(err, ipam.ErrNoAvailablePool):
		return classify(err, model.ErrForbidden)
	case errors.Is(err, ipam.ErrNoAvailableAddress):
		return classify(err, model.ErrUnavailable)
	case errors.Is(err, ipam.ErrNotFound):
		return classify(err, model.ErrNotFound)
	}
	return classify(err, model.ErrInvalid)
}

func (l localIPAM) ReleasePool(netID string) { l.a.ReleasePool(netID) }

func (l localIPAM) Allocate(netID string, static netip.Addr) (netip.Prefix, error) {
	p, err := l.a.AllocateAddress(netID, static)
	return p, ipamClass(err)
}

func (l localIPAM) Allocate6(netID string, static netip.Addr) (netip.Prefix, error) {
	p, err := l.a.AllocateAddress6(netID, static)
	return p, ipamClass(err)
}

func (l localIPAM) Release(netID string, addr netip.Addr) { l.a.ReleaseAddress(netID, addr) }

func (l localIPAM) Snapshot(netID string) ([]byte, error) {
	subs, ok := l.a.Subnets(netID)
	if !ok {
		return nil, nil
	}
	return json.Marshal(subs)
}

func (l localIPAM) Restore(netID string, cfgs []model.IPAMConfig, state []byte, inUse []netip.Addr) error {
	l.a.ReleasePool(netID)
	if len(state) > 0 {
		var subs []*ipam.Subnet
		if err := json.Unmarshal(state, &subs); err == nil && len(subs) > 0 {
			// Keep the snapshot's cursor, but the addresses in use are
			// those of the endpoints: a snapshot written after an address
			// was reserved, or before it was released, must not leak it.
			want := map[netip.Addr]bool{}
			for _, a := range inUse {
				want[a] = true
			}
			for _, s := range subs {
				for _, a := range s.InUse() {
					if !want[a] {
						s.Release(a)
					}
				}
				for _, a := range inUse {
					if s.Contains(a) && !s.Allocated(a) {
						if _, err := s.Allocate(a); err != nil {
							return err
						}
					}
				}
			}
			return l.a.Load(netID, subs)
		}
	}
	return l.a.Restore(netID, cfgs, inUse)
}
