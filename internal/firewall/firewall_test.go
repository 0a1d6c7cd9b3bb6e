package firewall

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/vxnet/vxnet/internal/model"
)

// fakeSysctl is an in-memory sysctl table.
type fakeSysctl map[string]string

func (s fakeSysctl) get(name string) (string, error) {
	v, ok := s[name]
	if !ok {
		return "", fmt.Errorf("no such sysctl %s", name)
	}
	return v, nil
}

func (s fakeSysctl) set(name, value string) error {
	if _, ok := s[name]; !ok {
		return fmt.Errorf("no such sysctl %s", name)
	}
	s[name] = value
	return nil
}

func newFake(t *testing.T, opts Options, sys fakeSysctl) (*Firewall, *knftables.Fake) {
	t.Helper()
	if opts.Table == "" {
		opts.Table = DefaultTable
	}
	fake := knftables.NewFake(knftables.InetFamily, opts.Table)
	f := newFirewall(fake, opts)
	f.sysctl = sys
	return f, fake
}

func bnfOn() fakeSysctl {
	return fakeSysctl{"net.bridge.bridge-nf-call-iptables": "1", "net.bridge.bridge-nf-call-ip6tables": "1"}
}

var cfgTwo = Config{
	Networks: []Network{
		{ID: "aaaa", Bridge: "br-a", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/26")}, ICC: true, Masquerade: true},
		{ID: "bbbb", Bridge: "br-b", Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.64/26"), netip.MustParsePrefix("2001:db8:1::/64")}, Internal: true},
	},
	VXLANPort:    4789,
	VXLANPeers:   []VXLANPeer{{netip.MustParseAddr("192.0.2.1"), 4096}, {netip.MustParseAddr("2001:db8::1"), 4097}},
	ControlPorts: []int{2379, 2380},
}

func TestApplyIdempotentAndReplacing(t *testing.T) {
	ctx := context.Background()
	f, fake := newFake(t, Options{}, bnfOn())
	if err := f.Apply(ctx, cfgTwo); err != nil {
		t.Fatal(err)
	}
	first := fake.Dump()
	if err := f.Apply(ctx, cfgTwo); err != nil {
		t.Fatal(err)
	}
	if second := fake.Dump(); second != first {
		t.Fatalf("second apply changed the table:\n%s\n---\n%s", first, second)
	}
	for _, want := range []string{`"br-a" . "br-a"`, `198.51.100.0/26 comment "vxnet net aaaa"`, "192.0.2.1 . 4096", "2001:db8::1 . 4097", "udp dport 4789", "tcp dport @ctlports", "2380"} {
		if !strings.Contains(first, want) {
			t.Errorf("table lacks %q:\n%s", want, first)
		}
	}
	// Internal networks are never masqueraded.
	if strings.Contains(first, "198.51.100.64/26") {
		t.Errorf("internal subnet in masquerade set:\n%s", first)
	}

	// Removing a network and the vxlan filter leaves nothing of them.
	if err := f.Apply(ctx, Config{Networks: cfgTwo.Networks[:1]}); err != nil {
		t.Fatal(err)
	}
	third := fake.Dump()
	for _, gone := range []string{"br-b", "bbbb", "4789", "192.0.2.1", "2379"} {
		if strings.Contains(third, gone) {
			t.Errorf("table still mentions %q:\n%s", gone, third)
		}
	}
}

func TestFlush(t *testing.T) {
	ctx := context.Background()
	f, fake := newFake(t, Options{Table: "mine"}, bnfOn())
	// Flush without a table is fine.
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(ctx, cfgTwo); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if d := fake.Dump(); d != "" {
		t.Fatalf("table left after flush:\n%s", d)
	}
}

func TestInvalid(t *testing.T) {
	good := Network{ID: "x", Bridge: "br-x", ICC: true}
	tests := map[string]Config{
		"empty bridge":    {Networks: []Network{{ID: "x"}}},
		"long bridge":     {Networks: []Network{{ID: "x", Bridge: "a-very-long-bridge"}}},
		"quote in bridge": {Networks: []Network{{ID: "x", Bridge: `br"x`}}},
		"space in bridge": {Networks: []Network{{ID: "x", Bridge: "br x"}}},
		"shared bridge":   {Networks: []Network{good, good}},
		"invalid subnet":  {Networks: []Network{{ID: "x", Bridge: "b", Subnets: []netip.Prefix{{}}}}},
		"port too large":  {VXLANPort: 70000},
		"negative port":   {VXLANPort: -1},
		"invalid vtep":    {VXLANPort: 4789, VXLANPeers: []VXLANPeer{{}}},
		"vni 0":           {VXLANPort: 4789, VXLANPeers: []VXLANPeer{{netip.MustParseAddr("192.0.2.1"), 0}}},
		"vni too large":   {VXLANPort: 4789, VXLANPeers: []VXLANPeer{{netip.MustParseAddr("192.0.2.1"), 1 << 24}}},
		"control port 0":  {ControlPorts: []int{0}},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			f, fake := newFake(t, Options{}, bnfOn())
			err := f.Apply(context.Background(), cfg)
			if !errors.Is(err, model.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if d := fake.Dump(); d != "" {
				t.Fatalf("invalid config changed the kernel:\n%s", d)
			}
		})
	}
}

func TestTableName(t *testing.T) {
	for _, name := range []string{"1abc", "a b", `a"b`, "a;b", strings.Repeat("a", 65)} {
		if _, err := New(Options{Table: name}); !errors.Is(err, model.ErrInvalid) {
			t.Errorf("New(%q): got %v, want ErrInvalid", name, err)
		}
	}
	for _, name := range []string{"vxnet", "vxnet-2", "a_b9"} {
		if err := validTable(name); err != nil {
			t.Errorf("validTable(%q): %v", name, err)
		}
	}
}

func TestCommentsAreSafe(t *testing.T) {
	ctx := context.Background()
	f, fake := newFake(t, Options{}, bnfOn())
	id := `evil" ; flush ruleset ; "` + strings.Repeat("x", 300)
	cfg := Config{Networks: []Network{{ID: id, Bridge: "br-e", ICC: true}}}
	if err := f.Apply(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	d := fake.Dump()
	if strings.Contains(d, "flush ruleset \"") || strings.Contains(d, `evil"`) {
		t.Fatalf("comment not sanitised:\n%s", d)
	}
	if len(comment(id)) > knftables.CommentLengthMax {
		t.Fatalf("comment too long: %d", len(comment(id)))
	}
}

func TestBridgeNetfilter(t *testing.T) {
	ctx := context.Background()
	iccOff := Config{Networks: []Network{{ID: "n", Bridge: "br-n", Subnets: []netip.Prefix{netip.MustParsePrefix("2001:db8:2::/64")}}}}
	iccOn := Config{Networks: []Network{{ID: "n", Bridge: "br-n", ICC: true}}}

	t.Run("off and not allowed to set", func(t *testing.T) {
		sys := fakeSysctl{"net.bridge.bridge-nf-call-iptables": "0", "net.bridge.bridge-nf-call-ip6tables": "1"}
		f, fake := newFake(t, Options{}, sys)
		err := f.Apply(ctx, iccOff)
		if !errors.Is(err, ErrBridgeNetfilter) {
			t.Fatalf("got %v, want ErrBridgeNetfilter", err)
		}
		if !strings.Contains(fake.Dump(), "br-n") {
			t.Fatal("rules not applied despite the icc warning")
		}
		if sys["net.bridge.bridge-nf-call-iptables"] != "0" {
			t.Fatal("sysctl changed without EnableBridgeNetfilter")
		}
		if err := f.Apply(ctx, iccOn); err != nil {
			t.Fatalf("icc=true needs no br_netfilter: %v", err)
		}
	})
	t.Run("off and allowed to set", func(t *testing.T) {
		sys := fakeSysctl{"net.bridge.bridge-nf-call-iptables": "0", "net.bridge.bridge-nf-call-ip6tables": "0"}
		f, _ := newFake(t, Options{EnableBridgeNetfilter: true}, sys)
		if err := f.Apply(ctx, iccOff); err != nil {
			t.Fatal(err)
		}
		if sys["net.bridge.bridge-nf-call-iptables"] != "1" || sys["net.bridge.bridge-nf-call-ip6tables"] != "1" {
			t.Fatalf("sysctls not set: %v", sys)
		}
	})
	t.Run("module missing", func(t *testing.T) {
		f, _ := newFake(t, Options{EnableBridgeNetfilter: true}, fakeSysctl{})
		if err := f.Apply(ctx, iccOff); !errors.Is(err, ErrBridgeNetfilter) {
			t.Fatalf("got %v, want ErrBridgeNetfilter", err)
		}
	})
}
