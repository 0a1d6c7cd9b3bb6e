package driver

import (
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"

	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/netns"
)

// AnnounceIPv6 sends an unsolicited neighbour advertisement (override set)
// for the endpoint's IPv6 address to all nodes of the link, as Docker does.
// IPv4 needs none (the MAC follows the IPv4 address), but an IPv6 address
// given again to another container (a static --ip6 after rm) comes with
// another MAC, and peers would keep the old one in their neighbour cache
// until it fails a probe. The socket is opened inside the sandbox. On an
// overlay the advertisement reaches the other hosts' containers through
// the VXLAN device's head-end replication.
func AnnounceIPv6(sandbox string, ep model.Endpoint) error {
	return netns.Do(sandbox, func() error {
		ifi, err := net.InterfaceByName(ep.IfName)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.Addr(ep.Addr6.Addr().String()))
		if err != nil {
			return err
		}
		defer c.Close()
		na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: ep.Addr6.Addr(),
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ep.MAC}}}
		return c.WriteTo(na, nil, netip.IPv6LinkLocalAllNodes())
	})
}
