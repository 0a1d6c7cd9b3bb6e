// Package overlaytest is an in-memory kernel for the overlay driver's peer
// controller (overlay.PeerKernel): per network, vxlan0's FDB and neighbour
// entries and what br0 learned, rendered as `bridge fdb` / `ip neigh`
// text. Changes are logged and can be made to fail, so the controller's
// reconcile is tested without root, and control-plane simulations can run
// many members' controllers in one process.
package overlaytest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/vxnet/vxnet/internal/driver/overlay"
)

// Kernel is an overlay.PeerKernel in memory. It is safe for concurrent
// use. The zero value is not usable; call NewKernel.
type Kernel struct {
	mu     sync.Mutex
	tables map[string]*table // network ID -> tables; absent: no data plane
	// failOps makes the next operations whose log line starts with a key
	// fail (the value counts how many more times).
	failOps map[string]int
	readErr error
	ops     []string
	log     bool
	plumbs  int // tables made
	reads   int // listings

	// holdMu guards holds: changes held before they take mu (a netlink
	// call that hangs), so listings and other networks go on.
	holdMu sync.Mutex
	holds  []*hold
}

type hold struct {
	prefix  string
	taken   bool
	held    chan struct{} // closed when a change is held
	release chan struct{}
}

type table struct {
	gen     int                         // which Plumb made it (the table's ID)
	fdb     map[string]overlay.FDBEntry // by "MAC dst VTEP"
	neigh   map[netip.Addr]overlay.KernelNeigh
	learned map[string]net.HardwareAddr
}

var _ overlay.PeerKernel = (*Kernel)(nil)

// NewKernel returns a kernel without data planes. With logOps, every
// change is kept for TakeOps (leave it off in long simulations).
func NewKernel(logOps bool) *Kernel {
	return &Kernel{tables: map[string]*table{}, failOps: map[string]int{}, log: logOps}
}

// Plumb gives network netID an empty data plane (what Join makes).
func (k *Kernel) Plumb(netID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.plumbs++
	k.tables[netID] = &table{gen: k.plumbs, fdb: map[string]overlay.FDBEntry{}, neigh: map[netip.Addr]overlay.KernelNeigh{},
		learned: map[string]net.HardwareAddr{}}
}

// Unplumb removes network netID's data plane (what the last Leave does).
func (k *Kernel) Unplumb(netID string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.tables, netID)
}

// Open implements overlay.PeerKernel.
func (k *Kernel) Open(netID string) (overlay.PeerTable, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.tables[netID]
	if !ok {
		return nil, false, nil
	}
	return &handle{k: k, t: t}, true, nil
}

// TakeOps returns the changes made since the last call, one per line.
func (k *Kernel) TakeOps() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := strings.Join(k.ops, "\n")
	k.ops = nil
	return out
}

// FailNext makes the next times changes whose log line starts with prefix
// fail (e.g. "neigh replace 10.0.0.2").
func (k *Kernel) FailNext(prefix string, times int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.failOps[prefix] = times
}

// HoldNext makes the next change whose log line starts with prefix wait,
// before it touches the tables, until release is called (as a netlink call
// that hangs); held is closed once a change waits. The prefix "list" holds
// the next listing of the tables. release may be called more than once.
func (k *Kernel) HoldNext(prefix string) (held <-chan struct{}, release func()) {
	h := &hold{prefix: prefix, held: make(chan struct{}), release: make(chan struct{})}
	k.holdMu.Lock()
	k.holds = append(k.holds, h)
	k.holdMu.Unlock()
	var once sync.Once
	return h.held, func() { once.Do(func() { close(h.release) }) }
}

// wait holds a change whose line matches a hold not taken yet.
func (k *Kernel) wait(line string) {
	k.holdMu.Lock()
	var h *hold
	for _, x := range k.holds {
		if !x.taken && strings.HasPrefix(line, x.prefix) {
			h, x.taken = x, true
			break
		}
	}
	k.holdMu.Unlock()
	if h != nil {
		close(h.held)
		<-h.release
	}
}

// FailReads makes listing the tables fail with err (nil: succeed again).
func (k *Kernel) FailReads(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.readErr = err
}

// Learn makes br0 hold a learned entry for mac on vxlan0.
func (k *Kernel) Learn(netID string, mac net.HardwareAddr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if t, ok := k.tables[netID]; ok {
		t.learned[mac.String()] = mac
	}
}

// PutNeigh sets a neighbour entry as someone else would (e.g. a dynamic
// one, Permanent false), bypassing the log.
func (k *Kernel) PutNeigh(netID string, n overlay.KernelNeigh) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if t, ok := k.tables[netID]; ok {
		t.neigh[n.IP] = n
	}
}

// DropFDB deletes an FDB entry as if by hand ("MAC dst VTEP").
func (k *Kernel) DropFDB(netID, entry string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if t, ok := k.tables[netID]; ok {
		delete(t.fdb, entry)
	}
}

// Render shows network netID's tables as sorted text lines:
//
//	fdb MAC dst VTEP
//	neigh IP lladdr MAC PERMANENT|REACHABLE
//	learned MAC
func (k *Kernel) Render(netID string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.tables[netID]
	if !ok {
		return "<no data plane>"
	}
	var lines []string
	for key := range t.fdb {
		lines = append(lines, "fdb "+key)
	}
	for _, n := range t.neigh {
		state := "PERMANENT"
		if !n.Permanent {
			state = "REACHABLE"
		}
		lines = append(lines, fmt.Sprintf("neigh %s lladdr %s %s", n.IP, n.MAC, state))
	}
	for _, m := range t.learned {
		lines = append(lines, "learned "+m.String())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// Entries counts network netID's FDB and neighbour entries.
func (k *Kernel) Entries(netID string) (fdb, neigh int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if t, ok := k.tables[netID]; ok {
		return len(t.fdb), len(t.neigh)
	}
	return 0, 0
}

func fdbKey(e overlay.FDBEntry) string { return e.MAC.String() + " dst " + e.VTEP.String() }

// handle is an open table.
type handle struct {
	k *Kernel
	t *table
}

func (h *handle) Close() {}

// ID names the table: a re-plumbed data plane is another one.
func (h *handle) ID() string { return fmt.Sprint(h.t.gen) }

// Reads returns how many times the tables were listed.
func (k *Kernel) Reads() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reads
}

// op logs a change (k.mu held) and says whether it is to fail.
func (h *handle) op(line string) error {
	if h.k.log {
		h.k.ops = append(h.k.ops, line)
	}
	for prefix, n := range h.k.failOps {
		if n > 0 && strings.HasPrefix(line, prefix) {
			h.k.failOps[prefix] = n - 1
			return errors.New("injected: no buffer space available")
		}
	}
	return nil
}

// Read lists the tables in a stable order (so logged changes are too).
func (h *handle) Read() (overlay.KernelEntries, error) {
	h.k.wait("list")
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	h.k.reads++
	if h.k.readErr != nil {
		return overlay.KernelEntries{}, h.k.readErr
	}
	var out overlay.KernelEntries
	for _, e := range h.t.fdb {
		out.FDB = append(out.FDB, e)
	}
	for _, n := range h.t.neigh {
		out.Neigh = append(out.Neigh, n)
	}
	for _, m := range h.t.learned {
		out.Learned = append(out.Learned, m)
	}
	sort.Slice(out.FDB, func(i, j int) bool { return fdbKey(out.FDB[i]) < fdbKey(out.FDB[j]) })
	sort.Slice(out.Neigh, func(i, j int) bool { return out.Neigh[i].IP.Less(out.Neigh[j].IP) })
	sort.Slice(out.Learned, func(i, j int) bool { return out.Learned[i].String() < out.Learned[j].String() })
	return out, nil
}

func (h *handle) ReplaceFDB(e overlay.FDBEntry) error {
	h.k.wait("fdb replace " + fdbKey(e))
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb replace " + fdbKey(e)); err != nil {
		return err
	}
	// Replace: one unicast entry per MAC.
	for key, old := range h.t.fdb {
		if old.MAC.String() == e.MAC.String() {
			delete(h.t.fdb, key)
		}
	}
	h.t.fdb[fdbKey(e)] = e
	return nil
}

func (h *handle) AppendFDB(e overlay.FDBEntry) error {
	h.k.wait("fdb append " + fdbKey(e))
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb append " + fdbKey(e)); err != nil {
		return err
	}
	h.t.fdb[fdbKey(e)] = e
	return nil
}

func (h *handle) DeleteFDB(e overlay.FDBEntry) error {
	h.k.wait("fdb del " + fdbKey(e))
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb del " + fdbKey(e)); err != nil {
		return err
	}
	delete(h.t.fdb, fdbKey(e))
	return nil
}

func (h *handle) SetNeigh(e overlay.NeighEntry) error {
	h.k.wait(fmt.Sprintf("neigh replace %s lladdr %s", e.IP, e.MAC))
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op(fmt.Sprintf("neigh replace %s lladdr %s", e.IP, e.MAC)); err != nil {
		return err
	}
	h.t.neigh[e.IP] = overlay.KernelNeigh{NeighEntry: e, Permanent: true}
	return nil
}

func (h *handle) DeleteNeigh(e overlay.NeighEntry) error {
	h.k.wait("neigh del " + e.IP.String())
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("neigh del " + e.IP.String()); err != nil {
		return err
	}
	delete(h.t.neigh, e.IP)
	return nil
}

func (h *handle) FlushLearned(mac net.HardwareAddr) error {
	h.k.wait("fdb del " + mac.String() + " master br0")
	h.k.mu.Lock()
	defer h.k.mu.Unlock()
	if err := h.op("fdb del " + mac.String() + " master br0"); err != nil {
		return err
	}
	delete(h.t.learned, mac.String())
	return nil
}
