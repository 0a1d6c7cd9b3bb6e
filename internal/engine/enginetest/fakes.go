package enginetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vxnet/vxnet/internal/driver"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/firewall"
	"github.com/vxnet/vxnet/internal/model"
)

// Images is an in-memory engine.Images holding busybox:latest at first.
// Import hashes what it reads (any bytes are an image here).
type Images struct {
	mu   sync.Mutex
	imgs []engine.ImageInfo
}

var _ engine.Images = (*Images)(nil)

// NewImages returns an image store with busybox:latest (default command
// sh, created an hour ago, 4.26 MB).
func NewImages() *Images {
	sum := sha256.Sum256([]byte("busybox"))
	return &Images{imgs: []engine.ImageInfo{{
		ID: "sha256:" + hex.EncodeToString(sum[:]), Name: "busybox:latest",
		Created: time.Now().Add(-time.Hour), Size: 4_260_000, Cmd: []string{"sh"},
	}}}
}

// Get finds an image by name, name:latest, full ID or unique ID prefix.
func (s *Images) Get(ref string) (engine.ImageInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var byPrefix []engine.ImageInfo
	for _, i := range s.imgs {
		if i.Name == ref || i.Name == ref+":latest" || i.ID == ref || i.ID == "sha256:"+ref {
			return i, nil
		}
		if len(ref) >= 4 && strings.HasPrefix(strings.TrimPrefix(i.ID, "sha256:"), strings.TrimPrefix(ref, "sha256:")) {
			byPrefix = append(byPrefix, i)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0], nil
	}
	if !strings.Contains(ref, ":") {
		ref += ":latest"
	}
	// The real store's words (it cannot pull).
	return engine.ImageInfo{}, classed{fmt.Sprintf("Unable to find image '%s' locally: no registry can be reached", ref), model.ErrNotFound}
}

// List returns the images by name.
func (s *Images) List() ([]engine.ImageInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]engine.ImageInfo(nil), s.imgs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Import stores what r holds as image name (replacing an image of that
// name); empty input is refused as the real store does.
func (s *Images) Import(name string, r io.Reader) (engine.ImageInfo, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return engine.ImageInfo{}, fmt.Errorf("image import: %w", err)
	}
	if n == 0 {
		return engine.ImageInfo{}, classed{"image import: empty archive", model.ErrInvalid}
	}
	img := engine.ImageInfo{ID: "sha256:" + hex.EncodeToString(h.Sum(nil)), Name: name, Created: time.Now(), Size: n}
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.imgs[:0]
	for _, old := range s.imgs {
		if old.Name != name {
			kept = append(kept, old)
		}
	}
	s.imgs = append(kept, img)
	return img, nil
}

// classed is a message in an engine error class.
type classed struct {
	msg   string
	class error
}

func (c classed) Error() string { return c.msg }
func (c classed) Unwrap() error { return c.class }

// Firewall is an engine.Firewall that keeps the last config applied and
// fails while Fail is set.
type Firewall struct {
	mu   sync.Mutex
	last firewall.Config
	n    int
	fail error
	// calls counts every Apply (failed ones too); ctxErr is the error of
	// a context that was already done when Apply ran.
	calls  int
	ctxErr error
}

var _ engine.Firewall = (*Firewall)(nil)

// Apply records cfg, or returns the failure set by SetFail.
func (f *Firewall) Apply(ctx context.Context, cfg firewall.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if err := ctx.Err(); err != nil {
		f.ctxErr = err
	}
	if f.fail != nil {
		return f.fail
	}
	f.last, f.n = cfg, f.n+1
	return nil
}

// Calls counts the applies asked, failed ones included.
func (f *Firewall) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// CtxErr is the error of a done context an apply ran with (nil: none
// did).
func (f *Firewall) CtxErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ctxErr
}

// Allows says whether the last config applied accepts VXLAN of vni from
// vtep.
func (f *Firewall) Allows(vtep netip.Addr, vni uint32) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.last.VXLANPeers {
		if p.Addr == vtep && p.VNI == vni {
			return true
		}
	}
	return false
}

// SetFail makes every Apply fail with err (nil: succeed again).
func (f *Firewall) SetFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// Last returns the last config applied and how many applies succeeded.
func (f *Firewall) Last() (firewall.Config, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last, f.n
}

// Driver is a driver.Driver that records networks and joins and checks
// options with the real driver's rules (Validate).
type Driver struct {
	typ, scope string
	// Validate, when set, checks -o options (the real driver's
	// ValidateOptions, which needs no kernel).
	Validate func(map[string]string) error

	mu     sync.Mutex
	nets   map[string]model.Network
	joined map[string]driver.JoinInfo
	fail   error
	// onNetwork runs at the start of every CreateNetwork and Join (where
	// a driver brings the network's devices up).
	onNetwork func(model.Network)
	// joinGate holds every Join until it closes (netlink that hangs);
	// joining counts the joins held.
	joinGate chan struct{}
	joining  int
}

var (
	_ driver.Driver          = (*Driver)(nil)
	_ driver.OptionValidator = (*Driver)(nil)
)

// NewDriver returns a recording local-scope driver of type typ.
func NewDriver(typ string, validate func(map[string]string) error) *Driver {
	return NewScopedDriver(typ, model.ScopeLocal, validate)
}

// NewScopedDriver returns a recording driver of type typ and scope
// (model.ScopeGlobal: an overlay driver's place).
func NewScopedDriver(typ, scope string, validate func(map[string]string) error) *Driver {
	return &Driver{typ: typ, scope: scope, Validate: validate, nets: map[string]model.Network{}, joined: map[string]driver.JoinInfo{}}
}

func (d *Driver) Type() string  { return d.typ }
func (d *Driver) Scope() string { return d.scope }

// OnNetwork makes fn run at the start of every CreateNetwork and Join.
func (d *Driver) OnNetwork(fn func(model.Network)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.onNetwork = fn
}

// GateJoins holds every Join until gate closes (nil: no gate).
func (d *Driver) GateJoins(gate chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.joinGate = gate
}

// JoinsHeld counts the joins waiting on the gate.
func (d *Driver) JoinsHeld() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.joining
}

func (d *Driver) hook(n model.Network) {
	d.mu.Lock()
	fn := d.onNetwork
	d.mu.Unlock()
	if fn != nil {
		fn(n)
	}
}

// ValidateOptions implements driver.OptionValidator.
func (d *Driver) ValidateOptions(opts map[string]string) error {
	if d.Validate == nil {
		return nil
	}
	return d.Validate(opts)
}

// SetFail makes CreateNetwork and Join fail with err (nil: succeed again).
func (d *Driver) SetFail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.fail = err
}

func (d *Driver) CreateNetwork(ctx context.Context, n model.Network) error {
	d.hook(n)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.nets[n.ID] = n
	return nil
}

func (d *Driver) DeleteNetwork(ctx context.Context, n model.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.nets, n.ID)
	return nil
}

func (d *Driver) Join(ctx context.Context, n model.Network, ep model.Endpoint, ji driver.JoinInfo) error {
	d.hook(n)
	d.mu.Lock()
	if gate := d.joinGate; gate != nil {
		d.joining++
		d.mu.Unlock()
		<-gate
		d.mu.Lock()
		d.joining--
	}
	defer d.mu.Unlock()
	if d.fail != nil {
		return d.fail
	}
	d.joined[ep.ID] = ji
	return nil
}

// JoinInfo is what an endpoint's join was given (false: not joined).
func (d *Driver) JoinInfo(epID string) (driver.JoinInfo, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ji, ok := d.joined[epID]
	return ji, ok
}

// Has says whether the driver holds network id.
func (d *Driver) Has(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.nets[id]
	return ok
}

func (d *Driver) Leave(ctx context.Context, n model.Network, ep model.Endpoint, sb model.Sandbox) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.joined, ep.ID)
	return nil
}

// Networks and Joined count what the driver holds now (to check that
// nothing is left half-made).
func (d *Driver) Networks() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.nets)
}

func (d *Driver) Joined() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.joined)
}
