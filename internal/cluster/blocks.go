package cluster

// Global addresses come from per-host blocks, as in Calico's IPAM. A subnet
// is cut into blocks (a /26 unless the network's option
// com.vxnet.ipam.block-size says otherwise; in an IPv6 subnet a /122 unless
// com.vxnet.ipam.block-size6 says otherwise, inside the first 2^32
// addresses, the part of an IPv6 subnet vxnet hands out; the whole subnet if
// it is smaller). A host claims a free block (its affinity), gives out addresses
// from its own blocks, so that concurrent allocations on different hosts
// write different keys, claims another block when its blocks are full, and
// borrows a free address from any other block only when no block is left to
// claim. Each block is one key, changed with compare-and-swap on its
// revision:
//
//	ipam/blocks/<netID>/<a.b.c.d-bits> -> blockRecord JSON
//
// Every address records its owner (node and endpoint), so the garbage
// collector (ipamgc.go) can free the addresses of endpoints, and hosts, that
// are gone. A block left empty by a release is deleted unless it is the
// releasing host's only block of the network; the garbage collector deletes
// empty blocks of hosts that are gone.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/model"
)

// OptBlockSize is the network option (-o) setting the prefix length of the
// address blocks hosts claim in a global network's IPv4 subnets.
const OptBlockSize = "com.vxnet.ipam.block-size"

// DefaultBlockBits is the default block prefix length (64 addresses).
const DefaultBlockBits = 26

// OptBlockSize6 is the network option (-o) setting the prefix length of the
// address blocks in a global network's IPv6 subnets.
const OptBlockSize6 = "com.vxnet.ipam.block-size6"

// DefaultBlockBits6 is the default IPv6 block prefix length (64 addresses).
const DefaultBlockBits6 = 122

// ParseBlockSize checks the block-size option (absent: the default).
func ParseBlockSize(opts map[string]string) (int, error) {
	v, ok := opts[OptBlockSize]
	if !ok {
		return DefaultBlockBits, nil
	}
	b, err := strconv.Atoi(strings.TrimPrefix(v, "/"))
	if err != nil || b < 16 || b > 32 {
		return 0, fmt.Errorf("%w: invalid option %s=%q: want an IPv4 prefix length from 16 to 32", model.ErrInvalid, OptBlockSize, v)
	}
	return b, nil
}

// ParseBlockSize6 checks the IPv6 block-size option (absent: the default).
func ParseBlockSize6(opts map[string]string) (int, error) {
	v, ok := opts[OptBlockSize6]
	if !ok {
		return DefaultBlockBits6, nil
	}
	b, err := strconv.Atoi(strings.TrimPrefix(v, "/"))
	if err != nil || b < 104 || b > 128 {
		return 0, fmt.Errorf("%w: invalid option %s=%q: want an IPv6 prefix length from 104 to 128", model.ErrInvalid, OptBlockSize6, v)
	}
	return b, nil
}

// AddrOwner is who holds a global address.
type AddrOwner struct {
	Node     string    `json:"Node"`
	Endpoint string    `json:"Endpoint,omitempty"` // empty when the caller gave none
	Since    time.Time `json:"Since"`
}

// blockRecord is the value of a block key.
type blockRecord struct {
	Block  netip.Prefix             `json:"Block"`
	Subnet netip.Prefix             `json:"Subnet"`
	Node   string                   `json:"Node"` // affinity: the host that claimed it
	Addrs  map[netip.Addr]AddrOwner `json:"Addrs"`
	// Cursor is the last address handed out dynamically: the next search
	// starts after it, so a released address is not reused at once.
	Cursor netip.Addr `json:"Cursor,omitzero"`
}

type storedBlock struct {
	key string
	rev int64 // mod revision; 0: not stored yet
	rec blockRecord
}

func (c *Cluster) blocksPrefix(netID string) string { return c.key("ipam", "blocks", netID) + "/" }

func (c *Cluster) blockKey(netID string, b netip.Prefix) string {
	return c.blocksPrefix(netID) + b.Addr().String() + "-" + strconv.Itoa(b.Bits())
}

// ipamView is what one allocation reads: the subnets, the blocks and the
// block size, at one revision.
type ipamView struct {
	subs   []storedSubnet
	blocks map[netip.Prefix]*storedBlock
	bits   int // block prefix length in IPv4 subnets
	bits6  int // in IPv6 subnets
}

// bitsFor is the block prefix length in subnet p.
func (v ipamView) bitsFor(p netip.Prefix) int {
	if p.Addr().Is6() {
		return v.bits6
	}
	return v.bits
}

func (c *Cluster) readIPAM(ctx context.Context, netID string) (ipamView, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	resp, err := c.cli.Txn(rctx).Then(
		clientv3.OpGet(c.subnetsPrefix(netID), clientv3.WithPrefix()),
		clientv3.OpGet(c.blocksPrefix(netID), clientv3.WithPrefix()),
		clientv3.OpGet(c.netIDKey(netID)),
	).Commit()
	if err != nil {
		return ipamView{}, unavailable("read pools", err)
	}
	v := ipamView{blocks: map[netip.Prefix]*storedBlock{}, bits: DefaultBlockBits, bits6: DefaultBlockBits6}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		s := new(ipam.Subnet)
		if err := json.Unmarshal(kv.Value, s); err != nil {
			return ipamView{}, fmt.Errorf("cluster: decode subnet %s: %w", kv.Key, err)
		}
		v.subs = append(v.subs, storedSubnet{string(kv.Key), kv.ModRevision, s})
	}
	if len(v.subs) == 0 {
		return ipamView{}, fmt.Errorf("cluster: %w: network %s holds no pools", ipam.ErrNotFound, netID)
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var r blockRecord
		if err := json.Unmarshal(kv.Value, &r); err != nil || !r.Block.IsValid() || string(kv.Key) != c.blockKey(netID, r.Block) {
			// Untrusted input: a block we cannot read is skipped (its
			// addresses are then never handed out by claiming it again,
			// since its key exists).
			c.log.Warn("skipping malformed address block", "key", string(kv.Key), "err", err)
			v.blocks[netip.Prefix{}] = nil
			continue
		}
		if r.Addrs == nil {
			r.Addrs = map[netip.Addr]AddrOwner{}
		}
		v.blocks[r.Block] = &storedBlock{key: string(kv.Key), rev: kv.ModRevision, rec: r}
	}
	delete(v.blocks, netip.Prefix{})
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) == 1 {
		var n model.Network
		if json.Unmarshal(kvs[0].Value, &n) == nil {
			if b, err := ParseBlockSize(n.Options); err == nil {
				v.bits = b
			}
			if b, err := ParseBlockSize6(n.Options); err == nil {
				v.bits6 = b
			}
		}
	}
	return v, nil
}

// blockOf returns the block of subnet s holding a.
func blockOf(s netip.Prefix, bits int, a netip.Addr) netip.Prefix {
	if bits < s.Bits() {
		bits = s.Bits()
	}
	p, _ := a.Prefix(bits)
	return p
}

// freeIn returns the first address of block b after cursor that sub may
// hand out dynamically and that is not taken; with wrap, the search goes on
// from the block's start up to the cursor.
func freeIn(sub *ipam.Subnet, b netip.Prefix, taken map[netip.Addr]AddrOwner, cursor netip.Addr, wrap bool) (netip.Addr, bool) {
	start := b.Addr()
	if cursor.IsValid() && b.Contains(cursor) {
		start = cursor.Next()
	}
	for a := start; b.Contains(a); a = a.Next() {
		if _, used := taken[a]; !used && sub.Usable(a, true) {
			return a, true
		}
	}
	if !wrap || start == b.Addr() {
		return netip.Addr{}, false
	}
	for a := b.Addr(); a.Less(start); a = a.Next() {
		if _, used := taken[a]; !used && sub.Usable(a, true) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// AllocateAddress gives out an IPv4 address of a global network, owned by
// this node, with no endpoint recorded. See AllocateAddressFor.
func (c *Cluster) AllocateAddress(ctx context.Context, netID string, static netip.Addr) (netip.Prefix, error) {
	return c.AllocateAddressFor(ctx, netID, static, "")
}

// AllocateAddressFor gives out an address of a global network, with its
// subnet's prefix length, owned by this node and endpoint. A valid static
// address (of either family) is taken in whatever block holds it; otherwise
// the IPv4 subnets are tried in order: a free address of this node's
// blocks, else a newly claimed block, else a free address borrowed from
// another node's block. Block writes are compare-and-swap, retried on
// contention. Allocations are durable.
func (c *Cluster) AllocateAddressFor(ctx context.Context, netID string, static netip.Addr, endpoint string) (netip.Prefix, error) {
	return c.allocate(ctx, netID, static, endpoint, static.Is6())
}

// AllocateAddress6For is AllocateAddressFor in the network's IPv6 subnets:
// static, if valid, must be an IPv6 address; without it the next free
// address of this node's IPv6 blocks (or a new block) is given out. A
// network without an IPv6 subnet is ErrInvalid.
func (c *Cluster) AllocateAddress6For(ctx context.Context, netID string, static netip.Addr, endpoint string) (netip.Prefix, error) {
	if static.IsValid() && !static.Is6() {
		return netip.Prefix{}, fmt.Errorf("%w: %s is not an IPv6 address", ipam.ErrInvalid, static)
	}
	return c.allocate(ctx, netID, static, endpoint, true)
}

func (c *Cluster) allocate(ctx context.Context, netID string, static netip.Addr, endpoint string, v6 bool) (netip.Prefix, error) {
	if err := c.checkOpen(); err != nil {
		return netip.Prefix{}, err
	}
	if c.opts.singleKeyIPAM {
		if v6 {
			return netip.Prefix{}, fmt.Errorf("%w: the single-key allocator has no IPv6", ipam.ErrInvalid)
		}
		return c.allocateSingleKey(ctx, netID, static)
	}
	// One allocation at a time from this host: its own blocks then see no
	// contention at all.
	unlock, err := c.lockIPAM(ctx)
	if err != nil {
		return netip.Prefix{}, unavailable("allocate address", err)
	}
	defer unlock()
	actx, cancel := context.WithTimeout(ctx, 5*c.opts.RequestTimeout)
	defer cancel()
	owner := AddrOwner{Node: c.opts.NodeID, Endpoint: endpoint, Since: time.Now().UTC()}
	if !static.IsValid() {
		p, ok, err := c.allocateCached(actx, netID, owner, v6)
		if err != nil || ok {
			return p, err
		}
	}
	for attempt := range 4 * maxTxnRetries {
		v, err := c.readIPAM(actx, netID)
		if err != nil {
			return netip.Prefix{}, err
		}
		blk, a, sub, err := c.pickAddress(netID, v, static, v6)
		if err != nil {
			return netip.Prefix{}, err
		}
		owner.Since = time.Now().UTC()
		blk.rec.Addrs[a] = owner
		ok, err := c.casBlock(actx, blk)
		if err != nil {
			return netip.Prefix{}, unavailable("allocate address", err)
		}
		if ok {
			v.blocks[blk.rec.Block] = blk
			c.cacheView(netID, v)
			return netip.PrefixFrom(a, sub.Prefix().Bits()), nil
		}
		c.casLost.Add(1)
		if err := casPause(actx, attempt); err != nil {
			return netip.Prefix{}, unavailable("allocate address", err)
		}
	}
	return netip.Prefix{}, unavailable("allocate address", errors.New("too much contention"))
}

// pickAddress chooses the block and address of one allocation in view v
// (see AllocateAddressFor), in the subnets of one family (IPv6 if v6) when
// no static address is given. The returned block is to be written back; a
// block with rev 0 is a new claim.
func (c *Cluster) pickAddress(netID string, v ipamView, static netip.Addr, v6 bool) (*storedBlock, netip.Addr, *ipam.Subnet, error) {
	self := c.opts.NodeID
	newBlock := func(sub *ipam.Subnet, b netip.Prefix) *storedBlock {
		return &storedBlock{key: c.blockKey(netID, b), rec: blockRecord{Block: b, Subnet: sub.Prefix(), Node: self, Addrs: map[netip.Addr]AddrOwner{}}}
	}
	if static.IsValid() {
		for _, s := range v.subs {
			if !s.sub.Contains(static) {
				continue
			}
			// The subnet's own rules (network, broadcast, gateway and
			// aux addresses) on a fresh copy, then the block's owners.
			fresh, err := ipam.NewSubnet(s.sub.Config())
			if err != nil {
				return nil, netip.Addr{}, nil, err
			}
			if _, err := fresh.Allocate(static); err != nil {
				return nil, netip.Addr{}, nil, err
			}
			b := blockOf(s.sub.Prefix(), v.bitsFor(s.sub.Prefix()), static)
			blk := v.blocks[b]
			if blk == nil {
				blk = newBlock(s.sub, b)
			}
			if _, used := blk.rec.Addrs[static]; used {
				return nil, netip.Addr{}, nil, fmt.Errorf("%w: %s", ipam.ErrAddressInUse, static)
			}
			return blk, static, s.sub, nil
		}
		return nil, netip.Addr{}, nil, fmt.Errorf("%w: no configured subnet contains IP address %s", ipam.ErrInvalid, static)
	}
	var last *ipam.Subnet
	for _, s := range v.subs {
		if s.sub.IPv6() != v6 {
			continue
		}
		last = s.sub
		sp := s.sub.Prefix()
		var mine, others []*storedBlock
		for b, blk := range v.blocks {
			if !sp.Contains(b.Addr()) {
				continue
			}
			if blk.rec.Node == self {
				mine = append(mine, blk)
			} else {
				others = append(others, blk)
			}
		}
		byAddr := func(x, y *storedBlock) int { return x.rec.Block.Addr().Compare(y.rec.Block.Addr()) }
		slices.SortFunc(mine, byAddr)
		// Own blocks after their cursors first (a released address is
		// not handed out again at once), then from their starts.
		for _, wrap := range []bool{false, true} {
			for _, blk := range mine {
				if a, ok := freeIn(s.sub, blk.rec.Block, blk.rec.Addrs, blk.rec.Cursor, wrap); ok {
					blk.rec.Cursor = a
					return blk, a, s.sub, nil
				}
			}
		}
		if b, ok := c.unclaimedBlock(s.sub, v); ok {
			blk := newBlock(s.sub, b)
			a, _ := freeIn(s.sub, b, nil, netip.Addr{}, false)
			blk.rec.Cursor = a
			return blk, a, s.sub, nil
		}
		slices.SortFunc(others, byAddr)
		for _, blk := range others {
			if a, ok := freeIn(s.sub, blk.rec.Block, blk.rec.Addrs, blk.rec.Cursor, true); ok {
				blk.rec.Cursor = a
				return blk, a, s.sub, nil
			}
		}
	}
	if last == nil {
		fam := "IPv4"
		if v6 {
			fam = "IPv6"
		}
		return nil, netip.Addr{}, nil, fmt.Errorf("%w: network %s has no %s subnet", ipam.ErrInvalid, netID, fam)
	}
	return nil, netip.Addr{}, nil, fmt.Errorf("%w: %s", ipam.ErrNoAvailableAddress, last.Prefix())
}

// unclaimedBlock returns a block of sub with no record and an address to
// hand out. The search starts at a place derived from the node ID, so hosts
// claiming at the same time seldom race for the same block. In an IPv6
// subnet the blocks lie in its first 2^32 addresses (what ipam.Subnet hands
// out).
func (c *Cluster) unclaimedBlock(sub *ipam.Subnet, v ipamView) (netip.Prefix, bool) {
	sp := sub.Prefix()
	bits := max(v.bitsFor(sp), sp.Bits())
	span := sp.Bits()
	if sub.IPv6() {
		span = max(span, 96)
	}
	n := uint64(1) << (bits - span)
	h := fnv.New64a()
	h.Write([]byte(c.opts.NodeID))
	start := h.Sum64() % n
	for i := range n {
		idx := (start + i) % n
		b := blockAt(sp, bits, idx)
		if _, taken := v.blocks[b]; taken {
			continue
		}
		if _, ok := freeIn(sub, b, nil, netip.Addr{}, false); ok {
			return b, true
		}
	}
	return netip.Prefix{}, false
}

// blockAt is the idx-th block of bits in subnet sp (for IPv6, counted in
// the low 32 bits of the address).
func blockAt(sp netip.Prefix, bits int, idx uint64) netip.Prefix {
	a := sp.Masked().Addr()
	if a.Is4() {
		size := uint64(1) << (32 - bits)
		return netip.PrefixFrom(fromU32(uint32(uint64(toU32(a))+idx*size)), bits)
	}
	b := a.As16()
	lo := uint64(binary.BigEndian.Uint32(b[12:]))
	size := uint64(1) << (128 - bits)
	binary.BigEndian.PutUint32(b[12:], uint32(lo+idx*size))
	return netip.PrefixFrom(netip.AddrFrom16(b), bits)
}

func toU32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromU32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// casBlock writes blk if its key is unchanged since it was read (absent,
// for a new claim), or deletes it when it holds no address. On success
// blk.rev is the new revision.
func (c *Cluster) casBlock(ctx context.Context, blk *storedBlock) (bool, error) {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	cmp := clientv3.Compare(clientv3.ModRevision(blk.key), "=", blk.rev)
	if blk.rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(blk.key), "=", 0)
	}
	op := clientv3.OpDelete(blk.key)
	if len(blk.rec.Addrs) > 0 {
		b, err := json.Marshal(blk.rec)
		if err != nil {
			return false, err
		}
		op = clientv3.OpPut(blk.key, string(b))
	}
	tr, err := c.cli.Txn(rctx).If(cmp).Then(op).Commit()
	if err != nil {
		return false, err
	}
	if tr.Succeeded {
		blk.rev = tr.Header.Revision
	}
	return tr.Succeeded, nil
}

// ipamCache is what a host remembers of a network between allocations (all
// under the host's IPAM lock): the subnets, the block size and its own
// blocks as last written. An allocation from a cached block is then one
// conditional write and no read; when the condition fails (another host
// borrowed from the block, took a static address in it, or the collector
// changed it), the cache is dropped and the allocation reads everything.
type ipamCache struct {
	subs []storedSubnet
	bits int
	own  []*storedBlock // sorted by address
}

// cacheView remembers v's subnets and this host's blocks (after blk, just
// written, changed).
func (c *Cluster) cacheView(netID string, v ipamView) {
	ic := &ipamCache{subs: v.subs, bits: v.bits}
	for _, blk := range v.blocks {
		if blk.rec.Node == c.opts.NodeID {
			ic.own = append(ic.own, blk)
		}
	}
	slices.SortFunc(ic.own, func(x, y *storedBlock) int { return x.rec.Block.Addr().Compare(y.rec.Block.Addr()) })
	c.ipamCache[netID] = ic
}

// allocateCached tries to allocate from this host's cached blocks of one
// family (IPv6 if v6). It returns ok false when the cache cannot serve (no
// cache, no room, or a lost condition, which drops the cache).
func (c *Cluster) allocateCached(ctx context.Context, netID string, owner AddrOwner, v6 bool) (netip.Prefix, bool, error) {
	ic := c.ipamCache[netID]
	if ic == nil {
		return netip.Prefix{}, false, nil
	}
	for _, wrap := range []bool{false, true} {
		for _, blk := range ic.own {
			if blk.rec.Block.Addr().Is6() != v6 {
				continue
			}
			var sub *ipam.Subnet
			for _, s := range ic.subs {
				if s.sub.Prefix().Contains(blk.rec.Block.Addr()) {
					sub = s.sub
				}
			}
			if sub == nil {
				continue
			}
			a, ok := freeIn(sub, blk.rec.Block, blk.rec.Addrs, blk.rec.Cursor, wrap)
			if !ok {
				continue
			}
			next := *blk
			next.rec.Addrs = maps.Clone(blk.rec.Addrs)
			next.rec.Addrs[a] = owner
			next.rec.Cursor = a
			won, err := c.casBlock(ctx, &next)
			if err != nil {
				return netip.Prefix{}, false, unavailable("allocate address", err)
			}
			if !won {
				delete(c.ipamCache, netID)
				return netip.Prefix{}, false, nil
			}
			*blk = next
			return netip.PrefixFrom(a, sub.Prefix().Bits()), true, nil
		}
	}
	return netip.Prefix{}, false, nil
}

// ReleaseAddress frees an address of a global network. Releasing a free
// address is harmless; an address in none of its subnets is ErrInvalid. A
// block left empty is deleted unless it is this node's only block of the
// network (which it keeps for its next allocation).
func (c *Cluster) ReleaseAddress(ctx context.Context, netID string, addr netip.Addr) error {
	if err := c.checkOpen(); err != nil {
		return err
	}
	if c.opts.singleKeyIPAM {
		return c.releaseSingleKey(ctx, netID, addr)
	}
	unlock, err := c.lockIPAM(ctx)
	if err != nil {
		return unavailable("release address", err)
	}
	defer unlock()
	actx, cancel := context.WithTimeout(ctx, 5*c.opts.RequestTimeout)
	defer cancel()
	delete(c.ipamCache, netID) // the next allocation reads afresh
	for attempt := range 4 * maxTxnRetries {
		v, err := c.readIPAM(actx, netID)
		if err != nil {
			return err
		}
		var sub *ipam.Subnet
		for _, s := range v.subs {
			if s.sub.Contains(addr) {
				sub = s.sub
			}
		}
		if sub == nil {
			return fmt.Errorf("cluster: release address %s: %w: no subnet of network %s contains it", addr, ipam.ErrInvalid, netID)
		}
		blk := v.blocks[blockOf(sub.Prefix(), v.bitsFor(sub.Prefix()), addr)]
		if blk == nil {
			return nil
		}
		if _, ok := blk.rec.Addrs[addr]; !ok {
			return nil
		}
		delete(blk.rec.Addrs, addr)
		if len(blk.rec.Addrs) == 0 && blk.rec.Node == c.opts.NodeID {
			own := 0
			for _, o := range v.blocks {
				if o.rec.Node == c.opts.NodeID {
					own++
				}
			}
			if own == 1 {
				// Keep the claim: write the empty block back.
				b, err := json.Marshal(blk.rec)
				if err != nil {
					return err
				}
				rctx, rcancel := c.reqCtx(actx)
				tr, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(blk.key), "=", blk.rev)).
					Then(clientv3.OpPut(blk.key, string(b))).Commit()
				rcancel()
				if err != nil {
					return unavailable("release address", err)
				}
				if tr.Succeeded {
					return nil
				}
				if err := casPause(actx, attempt); err != nil {
					return unavailable("release address", err)
				}
				continue
			}
		}
		ok, err := c.casBlock(actx, blk)
		if err != nil {
			return unavailable("release address", err)
		}
		if ok {
			return nil
		}
		if err := casPause(actx, attempt); err != nil {
			return unavailable("release address", err)
		}
	}
	return unavailable("release address", errors.New("too much contention"))
}

// AddressOwners returns every allocated address of a global network with
// its owner.
func (c *Cluster) AddressOwners(ctx context.Context, netID string) (map[netip.Addr]AddrOwner, error) {
	if err := c.checkOpen(); err != nil {
		return nil, err
	}
	v, err := c.readIPAM(ctx, netID)
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]AddrOwner{}
	for _, blk := range v.blocks {
		for a, o := range blk.rec.Addrs {
			out[a] = o
		}
	}
	return out, nil
}
