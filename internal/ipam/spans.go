package ipam

import "sort"

// span is an inclusive range of IPv4 addresses as integers.
type span struct{ lo, hi uint32 }

// spanSet is a sorted list of disjoint, non-adjacent spans. Serial allocation
// fills addresses in runs, so a busy /16 usually needs only a few spans:
// cheap to copy, search and serialise.
type spanSet []span

// index returns the index of the span containing v, or -1.
func (s spanSet) index(v uint32) int {
	i := sort.Search(len(s), func(i int) bool { return s[i].hi >= v })
	if i < len(s) && s[i].lo <= v {
		return i
	}
	return -1
}

func (s spanSet) contains(v uint32) bool { return s.index(v) >= 0 }

// add inserts v, merging with adjacent spans. Adding a member is a no-op.
func (s *spanSet) add(v uint32) {
	ss := *s
	// i is the first span ending at or after v.
	i := sort.Search(len(ss), func(i int) bool { return ss[i].hi >= v })
	if i < len(ss) && ss[i].lo <= v {
		return
	}
	joinLeft := i > 0 && ss[i-1].hi+1 == v
	joinRight := i < len(ss) && v+1 == ss[i].lo
	switch {
	case joinLeft && joinRight:
		ss[i-1].hi = ss[i].hi
		ss = append(ss[:i], ss[i+1:]...)
	case joinLeft:
		ss[i-1].hi = v
	case joinRight:
		ss[i].lo = v
	default:
		ss = append(ss, span{})
		copy(ss[i+1:], ss[i:])
		ss[i] = span{v, v}
	}
	*s = ss
}

// remove deletes v, splitting its span if needed. Removing a non-member is a
// no-op.
func (s *spanSet) remove(v uint32) {
	ss := *s
	i := ss.index(v)
	if i < 0 {
		return
	}
	sp := ss[i]
	switch {
	case sp.lo == v && sp.hi == v:
		ss = append(ss[:i], ss[i+1:]...)
	case sp.lo == v:
		ss[i].lo = v + 1
	case sp.hi == v:
		ss[i].hi = v - 1
	default:
		ss = append(ss, span{})
		copy(ss[i+2:], ss[i+1:])
		ss[i] = span{sp.lo, v - 1}
		ss[i+1] = span{v + 1, sp.hi}
	}
	*s = ss
}

// count returns the number of members.
func (s spanSet) count() uint64 {
	var n uint64
	for _, sp := range s {
		n += uint64(sp.hi-sp.lo) + 1
	}
	return n
}

// clone returns an independent copy.
func (s spanSet) clone() spanSet { return append(spanSet(nil), s...) }
