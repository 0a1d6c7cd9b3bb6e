package engine_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/vxnet/vxnet/internal/dns"
	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/engine/enginetest"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
	"github.com/vxnet/vxnet/internal/store"
)

// The engine's own tests build it on the fakes of enginetest (the same
// ones the API and CLI tests use), with what those leave out: an embedded
// DNS server on loopback, a cluster, an overlay driver.

type testEnv struct {
	t      *testing.T
	dir    string
	st     *store.Store
	bridge *enginetest.Driver
	rt     *enginetest.Runtime
	fw     *enginetest.Firewall
	dns    *dns.Server
	e      *engine.Engine
}

// badOption refuses the -o option "bad" as a driver's option check would.
func badOption(opts map[string]string) error {
	if v, ok := opts["bad"]; ok {
		return fmt.Errorf("bad option %q: %w", v, driver.ErrInvalid)
	}
	return nil
}

// newTestEngine builds an engine on fakes over the local store in dir;
// sandboxes get no namespaces (the netns package needs root).
func newTestEngine(t *testing.T, dir string, rt *enginetest.Runtime) *testEnv {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, "vxnet.db"))
	if err != nil {
		t.Fatal(err)
	}
	env := &testEnv{t: t, dir: dir, st: st, bridge: enginetest.NewDriver("bridge", badOption), rt: rt, fw: &enginetest.Firewall{}}
	env.dns = loopbackDNS(t, dir)
	e, err := engine.New(engine.Options{
		DataRoot: dir, ExecRoot: filepath.Join(dir, "exec"), Store: st,
		Drivers: []driver.Driver{env.bridge, enginetest.NewDriver("host", nil), enginetest.NewDriver("null", nil)},
		IPAM:    engine.LocalIPAM(ipam.NewAllocator()), Runtime: rt, Images: enginetest.NewImages(), Firewall: env.fw, DNS: env.dns,
		HostRoutes: func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16")}, nil },
		NoNetns:    true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	env.e = e
	t.Cleanup(func() { e.Close(); st.Close() })
	return env
}

// lookup asks the engine's DNS server for name (A) from container ctr and
// returns the addresses, sorted, or the rcode's name when not NOERROR.
func (env *testEnv) lookup(ctr model.Container, name string) string {
	return lookupA(env.dns, ctr.ID, name)
}

// loopbackDNS is an embedded DNS server whose sockets are on loopback (no
// namespaces without root); tests ask it through Answer.
func loopbackDNS(t *testing.T, dir string) *dns.Server {
	s := dns.New(dns.Options{HostResolvConf: filepath.Join(dir, "no-resolv.conf"),
		Listen: func(dns.Sandbox) (net.PacketConn, net.Listener, error) {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return nil, nil, err
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				pc.Close()
				return nil, nil, err
			}
			return pc, ln, nil
		}})
	t.Cleanup(s.Close)
	return s
}

// lookupA asks s for name (A) from container ctrID: the addresses, sorted,
// or the rcode's name.
func lookupA(s *dns.Server, ctrID, name string) string {
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	m := s.Answer(ctrID, q)
	if m == nil {
		return "dropped"
	}
	if m.Rcode != mdns.RcodeSuccess {
		return mdns.RcodeToString[m.Rcode]
	}
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// published is the port mappings of the last firewall applied.
func published(fw *enginetest.Firewall) []firewall.PortMapping {
	cfg, _ := fw.Last()
	return cfg.Ports
}
