package ipam

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// subnetJSON is the serialised form of a Subnet. Allocated holds the
// allocated addresses as ascending, disjoint runs: "10.0.0.2-10.0.0.40" or a
// single "10.0.0.42". Serial allocation makes few runs, so even a busy /16
// stays small.
type subnetJSON struct {
	Config    Config     `json:"Config"`
	Allocated []string   `json:"Allocated,omitempty"`
	Last      netip.Addr `json:"Last,omitzero"`
}

// MarshalJSON encodes the configuration, the allocated addresses and the
// serial cursor.
func (s *Subnet) MarshalJSON() ([]byte, error) {
	j := subnetJSON{Config: s.cfg, Last: s.Last()}
	for _, sp := range s.used {
		if sp.lo == sp.hi {
			j.Allocated = append(j.Allocated, s.addr(sp.lo).String())
		} else {
			j.Allocated = append(j.Allocated, s.addr(sp.lo).String()+"-"+s.addr(sp.hi).String())
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON wrote, validating it as NewSubnet
// does; allocated runs must be ascending, inside the subnet's host addresses
// and clear of the gateway and aux addresses. Errors wrap ErrInvalid.
func (s *Subnet) UnmarshalJSON(b []byte) error {
	var j subnetJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return errorf(ErrInvalid, "ipam: decode subnet: %v", err)
	}
	ns, err := NewSubnet(j.Config)
	if err != nil {
		return fmt.Errorf("ipam: decode subnet: %w", err)
	}
	for _, r := range j.Allocated {
		lo, hi, err := ns.parseRun(r)
		if err != nil {
			return err
		}
		if lo > hi || lo < ns.first || hi > ns.last {
			return errorf(ErrInvalid, "ipam: decode subnet %s: allocated run %q outside the host addresses", ns.cfg.Subnet, r)
		}
		if n := len(ns.used); n > 0 && lo <= ns.used[n-1].hi {
			return errorf(ErrInvalid, "ipam: decode subnet %s: allocated run %q not ascending", ns.cfg.Subnet, r)
		}
		for _, rs := range ns.reserved {
			if rs.lo <= hi && lo <= rs.hi {
				return errorf(ErrInvalid, "ipam: decode subnet %s: allocated run %q holds a reserved address", ns.cfg.Subnet, r)
			}
		}
		if n := len(ns.used); n > 0 && ns.used[n-1].hi+1 == lo {
			ns.used[n-1].hi = hi
		} else {
			ns.used = append(ns.used, span{lo, hi})
		}
	}
	if j.Last.IsValid() {
		if !ns.family(j.Last) || !ns.Contains(j.Last) {
			return errorf(ErrInvalid, "ipam: decode subnet %s: cursor %s outside the subnet", ns.cfg.Subnet, j.Last)
		}
		ns.cursor, ns.hasCur = ns.u32(j.Last), true
	}
	*s = *ns
	return nil
}

// parseRun parses "a" or "a-b" into integers.
func (s *Subnet) parseRun(r string) (uint32, uint32, error) {
	los, his, isRange := strings.Cut(r, "-")
	lo, err := netip.ParseAddr(los)
	if err != nil || !s.family(lo) {
		return 0, 0, errorf(ErrInvalid, "ipam: decode subnet: bad allocated run %q", r)
	}
	hi := lo
	if isRange {
		hi, err = netip.ParseAddr(his)
		if err != nil || !s.family(hi) {
			return 0, 0, errorf(ErrInvalid, "ipam: decode subnet: bad allocated run %q", r)
		}
	}
	return s.u32(lo), s.u32(hi), nil
}
