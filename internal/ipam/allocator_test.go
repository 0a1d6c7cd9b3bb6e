package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

func subnetsOf(t *testing.T, a *Allocator, id string) []netip.Prefix {
	t.Helper()
	subs, ok := a.Subnets(id)
	if !ok {
		return nil
	}
	var out []netip.Prefix
	for _, s := range subs {
		out = append(out, s.Prefix())
	}
	return out
}

func TestRequestPoolDefaults(t *testing.T) {
	a := NewAllocator()
	routes := []netip.Prefix{pfx("172.18.0.0/16")}
	var got []netip.Prefix
	for i := range 4 {
		cfgs, err := a.RequestPool(fmt.Sprint("n", i), nil, routes)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfgs) != 1 {
			t.Fatalf("configs = %+v", cfgs)
		}
		got = append(got, cfgs[0].Subnet)
	}
	want := []netip.Prefix{pfx("172.17.0.0/16"), pfx("172.19.0.0/16"), pfx("172.20.0.0/16"), pfx("172.21.0.0/16")}
	if !slices.Equal(got, want) {
		t.Fatalf("default pools = %v, want %v", got, want)
	}
	// A released pool is the first choice again.
	a.ReleasePool("n1")
	cfgs, err := a.RequestPool("n9", []Config{{}}, routes)
	if err != nil || cfgs[0].Subnet != pfx("172.19.0.0/16") || cfgs[0].Gateway != ip("172.19.0.1") {
		t.Fatalf("after release: %+v, %v", cfgs, err)
	}
}

func TestRequestPoolDefaultsAvoidGivenSubnets(t *testing.T) {
	a := NewAllocator()
	// The zero config comes first but must not take the given 172.17/16.
	cfgs, err := a.RequestPool("n", []Config{{}, {Subnet: pfx("172.17.0.0/16")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfgs[0].Subnet != pfx("172.18.0.0/16") || cfgs[1].Subnet != pfx("172.17.0.0/16") {
		t.Fatalf("configs = %+v", cfgs)
	}
}

func TestRequestPoolExhaustsDefaults(t *testing.T) {
	a := NewAllocator()
	n := 0
	for ; n < 100; n++ {
		_, err := a.RequestPool(fmt.Sprint("n", n), nil, nil)
		if errors.Is(err, ErrNoAvailablePool) {
			if err.Error() != ErrNoAvailablePool.Error() {
				t.Fatalf("wording: %q", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n != 31 {
		t.Fatalf("got %d default pools, want 31", n)
	}
	if _, ok := a.Subnets(fmt.Sprint("n", n)); ok {
		t.Fatal("failed request left a network behind")
	}
}

func TestRequestPoolErrors(t *testing.T) {
	a := NewAllocator()
	if _, err := a.RequestPool("held", []Config{{Subnet: pfx("10.1.0.0/16")}}, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      string
		cfgs    []Config
		sent    error
		wantMsg string
	}{
		{"overlap inside", "x", []Config{{Subnet: pfx("10.1.2.0/24")}}, ErrPoolOverlap,
			"Pool overlaps with other one on this address space: 10.1.2.0/24 overlaps 10.1.0.0/16 of network held"},
		{"overlap around", "x", []Config{{Subnet: pfx("10.0.0.0/8")}}, ErrPoolOverlap,
			"Pool overlaps with other one on this address space: 10.0.0.0/8 overlaps 10.1.0.0/16 of network held"},
		{"overlap within request", "x", []Config{{Subnet: pfx("10.2.0.0/16")}, {Subnet: pfx("10.2.3.0/24")}}, ErrPoolOverlap,
			"Pool overlaps with other one on this address space: 10.2.3.0/24 overlaps 10.2.0.0/16 of the same request"},
		{"gateway without subnet", "x", []Config{{Gateway: ip("10.3.0.1")}}, ErrInvalid,
			"ipam: ip-range, gateway and aux-address need a subnet"},
		{"bad second config", "x", []Config{{Subnet: pfx("10.3.0.0/16")}, {Subnet: pfx("10.4.0.0/16"), Gateway: ip("10.5.0.1")}}, ErrInvalid,
			"no matching subnet for gateway 10.5.0.1"},
		{"default after given, none left", "x", []Config{{Subnet: pfx("10.3.0.0/16")}, {}}, ErrNoAvailablePool, ErrNoAvailablePool.Error()},
		{"already held", "held", []Config{{Subnet: pfx("10.9.0.0/16")}}, ErrInvalid,
			"ipam: request pool: network held already holds pools"},
	}
	allRoutes := []netip.Prefix{pfx("0.0.0.0/1"), pfx("128.0.0.0/1")}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.RequestPool(tt.id, tt.cfgs, allRoutes)
			if !errors.Is(err, tt.sent) || err.Error() != tt.wantMsg {
				t.Fatalf("err = %v, want %q", err, tt.wantMsg)
			}
		})
	}
	// None of the failed requests reserved anything: 10.3/16 and 10.2/16 are free.
	if _, ok := a.Subnets("x"); ok {
		t.Fatal("failed request left network x")
	}
	if _, err := a.RequestPool("y", []Config{{Subnet: pfx("10.3.0.0/16")}, {Subnet: pfx("10.2.0.0/16")}}, nil); err != nil {
		t.Fatalf("subnets of failed requests still reserved: %v", err)
	}
	if got := subnetsOf(t, a, "held"); !slices.Equal(got, []netip.Prefix{pfx("10.1.0.0/16")}) {
		t.Fatalf("held = %v", got)
	}
}

func TestAllocateAddressMultipleSubnets(t *testing.T) {
	a := NewAllocator()
	_, err := a.RequestPool("n", []Config{
		{Subnet: pfx("10.0.0.0/30")}, // one dynamic address: .2
		{Subnet: pfx("10.0.1.0/24"), IPRange: pfx("10.0.1.128/25")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	for range 3 {
		p, err := a.AllocateAddress("n", netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p)
	}
	want := []netip.Prefix{pfx("10.0.0.2/30"), pfx("10.0.1.128/24"), pfx("10.0.1.129/24")}
	if !slices.Equal(got, want) {
		t.Fatalf("dynamic = %v, want %v", got, want)
	}
	// Static goes to the subnet holding it, outside the ip-range too.
	if p, err := a.AllocateAddress("n", ip("10.0.1.5")); err != nil || p != pfx("10.0.1.5/24") {
		t.Fatalf("static = %v, %v", p, err)
	}
	if _, err := a.AllocateAddress("n", ip("10.0.1.5")); !errors.Is(err, ErrAddressInUse) || err.Error() != "Address already in use: 10.0.1.5" {
		t.Fatalf("static twice: %v", err)
	}
	if _, err := a.AllocateAddress("n", ip("10.0.2.5")); !errors.Is(err, ErrInvalid) || err.Error() != "no configured subnet contains IP address 10.0.2.5" {
		t.Fatalf("static outside: %v", err)
	}
	if _, err := a.AllocateAddress("nope", netip.Addr{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown network: %v", err)
	}
	if err := a.ReleaseAddress("n", ip("10.0.1.5")); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseAddress("n", ip("10.0.1.5")); err != nil {
		t.Fatalf("release twice: %v", err)
	}
	if err := a.ReleaseAddress("n", ip("10.7.0.1")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("release outside: %v", err)
	}
	if err := a.ReleaseAddress("nope", ip("10.0.1.5")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release unknown network: %v", err)
	}
	a.ReleasePool("n")
	a.ReleasePool("n") // harmless
	if _, err := a.AllocateAddress("n", netip.Addr{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after ReleasePool: %v", err)
	}
}

func TestAllocateAddressExhausted(t *testing.T) {
	a := NewAllocator()
	if _, err := a.RequestPool("n", []Config{{Subnet: pfx("10.0.0.0/30")}, {Subnet: pfx("10.0.1.0/30")}}, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := a.AllocateAddress("n", netip.Addr{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := a.AllocateAddress("n", netip.Addr{})
	if !errors.Is(err, ErrNoAvailableAddress) || err.Error() != "no available addresses on this pool: 10.0.1.0/30" {
		t.Fatalf("err = %v", err)
	}
}

// TestConcurrentAllocateNeverDuplicates: many goroutines allocate and release
// at once from one Allocator; no address is ever held twice.
func TestConcurrentAllocateNeverDuplicates(t *testing.T) {
	a := NewAllocator()
	if _, err := a.RequestPool("n", []Config{{Subnet: pfx("10.0.0.0/24")}, {Subnet: pfx("10.0.1.0/25")}}, nil); err != nil {
		t.Fatal(err)
	}
	const workers, rounds = 8, 200
	var (
		mu     sync.Mutex
		holder = map[netip.Addr]int{}
		wg     sync.WaitGroup
		errs   = make(chan error, workers)
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []netip.Addr
			for i := range rounds {
				var static netip.Addr
				if i%7 == 0 {
					static = netip.AddrFrom4([4]byte{10, 0, 1, byte(2 + (w*rounds+i)%120)})
				}
				p, err := a.AllocateAddress("n", static)
				if errors.Is(err, ErrAddressInUse) || errors.Is(err, ErrNoAvailableAddress) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if other, ok := holder[p.Addr()]; ok {
					mu.Unlock()
					errs <- fmt.Errorf("%v given to worker %d while held by %d", p.Addr(), w, other)
					return
				}
				holder[p.Addr()] = w
				mu.Unlock()
				mine = append(mine, p.Addr())
				if i%3 == 0 { // release the oldest now and then
					old := mine[0]
					mine = mine[1:]
					mu.Lock()
					delete(holder, old)
					mu.Unlock()
					if err := a.ReleaseAddress("n", old); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	subs, _ := a.Subnets("n")
	var inUse []netip.Addr
	for _, s := range subs {
		inUse = append(inUse, s.InUse()...)
	}
	if len(inUse) != len(holder) {
		t.Fatalf("allocator holds %d addresses, workers hold %d", len(inUse), len(holder))
	}
	for _, ad := range inUse {
		if _, ok := holder[ad]; !ok {
			t.Fatalf("allocator holds %v that no worker holds", ad)
		}
	}
}

func TestRestore(t *testing.T) {
	a := NewAllocator()
	cfgs := []Config{{Subnet: pfx("172.18.0.0/16"), Gateway: ip("172.18.0.1")}}
	if err := a.Restore("n", cfgs, []netip.Addr{ip("172.18.0.2"), ip("172.18.0.9"), ip("172.18.0.4")}); err != nil {
		t.Fatal(err)
	}
	// New addresses follow the highest restored one.
	if p, err := a.AllocateAddress("n", netip.Addr{}); err != nil || p != pfx("172.18.0.10/16") {
		t.Fatalf("after restore: %v, %v", p, err)
	}
	if _, err := a.AllocateAddress("n", ip("172.18.0.4")); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("restored address not held: %v", err)
	}
	// A default pool request now skips the restored subnet.
	got, err := a.RequestPool("m", nil, nil)
	if err != nil || got[0].Subnet != pfx("172.17.0.0/16") {
		t.Fatalf("RequestPool = %v, %v", got, err)
	}
	if got, err := a.RequestPool("k", nil, nil); err != nil || got[0].Subnet != pfx("172.19.0.0/16") {
		t.Fatalf("RequestPool = %v, %v", got, err)
	}

	bad := []struct {
		name  string
		cfgs  []Config
		inUse []netip.Addr
		sent  error
	}{
		{"overlap", []Config{{Subnet: pfx("172.18.5.0/24")}}, nil, ErrPoolOverlap},
		{"address outside", []Config{{Subnet: pfx("10.5.0.0/24")}}, []netip.Addr{ip("10.6.0.2")}, ErrInvalid},
		{"address twice", []Config{{Subnet: pfx("10.5.0.0/24")}}, []netip.Addr{ip("10.5.0.2"), ip("10.5.0.2")}, ErrAddressInUse},
		{"gateway as endpoint", []Config{{Subnet: pfx("10.5.0.0/24")}}, []netip.Addr{ip("10.5.0.1")}, ErrAddressInUse},
		{"subnets overlap each other", []Config{{Subnet: pfx("10.5.0.0/24")}, {Subnet: pfx("10.5.0.0/25")}}, nil, ErrPoolOverlap},
	}
	for _, tt := range bad {
		if err := a.Restore("bad", tt.cfgs, tt.inUse); !errors.Is(err, tt.sent) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.sent)
		}
		if _, ok := a.Subnets("bad"); ok {
			t.Fatalf("%s: failed restore left state", tt.name)
		}
	}
	if err := a.Restore("n", []Config{{Subnet: pfx("10.8.0.0/24")}}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("restore over a held network: %v", err)
	}
}

func TestLoadAndSubnetsAreCopies(t *testing.T) {
	src := mustSubnet(t, Config{Subnet: pfx("10.0.0.0/24")})
	alloc(t, src)
	a := NewAllocator()
	if err := a.Load("n", []*Subnet{src}); err != nil {
		t.Fatal(err)
	}
	alloc(t, src) // the caller's value is not the allocator's
	if p, err := a.AllocateAddress("n", netip.Addr{}); err != nil || p != pfx("10.0.0.3/24") {
		t.Fatalf("allocate after load = %v, %v", p, err)
	}
	subs, _ := a.Subnets("n")
	alloc(t, subs[0])
	alloc(t, subs[0])
	if p, _ := a.AllocateAddress("n", netip.Addr{}); p != pfx("10.0.0.4/24") {
		t.Fatalf("Subnets returned a live value: next = %v", p)
	}
	if err := a.Load("m", []*Subnet{mustSubnet(t, Config{Subnet: pfx("10.0.0.128/25")})}); !errors.Is(err, ErrPoolOverlap) {
		t.Fatalf("overlapping load: %v", err)
	}
}
