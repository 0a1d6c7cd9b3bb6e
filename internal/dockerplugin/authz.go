package dockerplugin

import (
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Docker's network and IPAM protocols never carry the network's or the
// container's name. As an authorization plugin, vxnet sees every API
// request dockerd serves (and lets all of them through):
//
//   - POST /networks/create with driver vxnet: the request being served
//     is remembered until its response, so RequestPool knows the name and
//     the options. vxnet network creates on one dockerd are serialized.
//   - POST /containers/create?name=N: its response gives the ID, so the
//     plugin knows the ID's name.
//   - POST /containers/{id}/start and POST /networks/{id}/connect: Join
//     calls while one is served are that container's; they are serialized
//     too, so a name never lands on another container's endpoint.
//
// A slot whose response never comes (dockerd died) is freed after
// slotHold; a request waits at most slotWait for a slot.

const (
	slotWait = 30 * time.Second
	slotHold = 2 * time.Minute
)

// networkCreate is the part of Docker's network create request vxnet reads.
type networkCreate struct {
	Name, Driver string
	IPAM         struct {
		Driver string
		Config []struct {
			Subnet, IPRange, Gateway string
			AuxAddress               map[string]string
		}
		Options map[string]string
	}
	Options                                   map[string]string
	Labels                                    map[string]string
	Internal, EnableIPv6, Attachable, Ingress bool
	EnableIPv4                                *bool // API 1.48; false is refused
	ConfigOnly                                bool
	Scope                                     string
	ConfigFrom                                *struct{ Network string }
}

type authz struct {
	mu         sync.Mutex
	containers map[string]string // container ID -> name
	create     *networkCreate    // network create being served
	start      string            // name of the container being started
	slots      map[string]*slot  // "create" and "start"
}

type slot struct {
	ch    chan struct{}
	owner string // "METHOD URI" holding it
	token int
}

func (a *authz) slot(kind string) *slot {
	if a.slots == nil {
		a.slots = map[string]*slot{}
	}
	s, ok := a.slots[kind]
	if !ok {
		s = &slot{ch: make(chan struct{}, 1)}
		a.slots[kind] = s
	}
	return s
}

// acquire takes the slot of kind for the request key, then runs set.
func (a *authz) acquire(kind, key string, set func()) bool {
	a.mu.Lock()
	s := a.slot(kind)
	a.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	case <-time.After(slotWait):
		return false
	}
	a.mu.Lock()
	s.token++
	tok := s.token
	s.owner = key
	set()
	a.mu.Unlock()
	time.AfterFunc(slotHold, func() { a.release(kind, key, tok) })
	return true
}

// release frees the slot of kind if key (and token, if not 0) holds it.
func (a *authz) release(kind, key string, tok int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.slot(kind)
	if s.owner != key || (tok != 0 && tok != s.token) {
		return
	}
	s.owner = ""
	switch kind {
	case "create":
		a.create = nil
	case "start":
		a.start = ""
	}
	<-s.ch
}

func (a *authz) pendingCreate() (networkCreate, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.create == nil {
		return networkCreate{}, false
	}
	return *a.create, true
}

func (a *authz) currentName() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.start
}

// nameOf resolves a container reference as dockerd would for the
// containers it told us about: full ID, name, unique ID prefix.
func (a *authz) nameOf(ref string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n, ok := a.containers[ref]; ok {
		return n
	}
	var found []string
	for id, n := range a.containers {
		if n == ref {
			return n
		}
		if strings.HasPrefix(id, ref) {
			found = append(found, n)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return ""
}

type authzReq struct {
	RequestMethod      string
	RequestURI         string `json:"RequestUri"`
	RequestBody        []byte
	ResponseStatusCode int
	ResponseBody       []byte
}

var (
	versionPrefix = regexp.MustCompile(`^/v[0-9]+\.[0-9]+`)
	startPath     = regexp.MustCompile(`^/containers/([^/]+)/start$`)
	connectPath   = regexp.MustCompile(`^/networks/([^/]+)/connect$`)
)

func parseAuthz(body []byte) (authzReq, string, url.Values, error) {
	var r authzReq
	if err := decode(body, &r); err != nil {
		return r, "", nil, err
	}
	u, err := url.Parse(r.RequestURI)
	if err != nil {
		return r, "", nil, err
	}
	return r, versionPrefix.ReplaceAllString(u.Path, ""), u.Query(), nil
}

func allow() any { return map[string]any{"Allow": true} }

func deny(msg string) any { return map[string]any{"Allow": false, "Msg": "vxnet: " + msg} }

func (p *Plugin) authzReq(ctx context.Context, body []byte) (any, error) {
	r, path, _, err := parseAuthz(body)
	if err != nil {
		return nil, err
	}
	if r.RequestMethod != "POST" {
		return allow(), nil
	}
	key := r.RequestMethod + " " + r.RequestURI
	switch {
	case path == "/networks/create":
		var nc networkCreate
		if json.Unmarshal(r.RequestBody, &nc) != nil || nc.Driver != Name {
			return allow(), nil
		}
		if nc.IPAM.Driver != Name {
			return deny("vxnet networks need the vxnet IPAM driver: add --ipam-driver vxnet"), nil
		}
		if !p.authz.acquire("create", key, func() { p.authz.create = &nc }) {
			return deny("another vxnet network create is still in progress; try again"), nil
		}
	case startPath.MatchString(path):
		ref := startPath.FindStringSubmatch(path)[1]
		p.startWindow(key, ref)
	case connectPath.MatchString(path):
		var c struct{ Container string }
		if json.Unmarshal(r.RequestBody, &c) == nil && c.Container != "" {
			p.startWindow(key, c.Container)
		}
	}
	return allow(), nil
}

// startWindow names the Join calls made while a start or connect of a
// container vxnet knows is served.
func (p *Plugin) startWindow(key, ref string) {
	name := p.authz.nameOf(strings.TrimPrefix(ref, "/"))
	if name == "" {
		return
	}
	if !p.authz.acquire("start", key, func() { p.authz.start = name }) {
		p.log.Warn("container start not named: another start still holds the slot", "container", name)
	}
}

func (p *Plugin) authzRes(ctx context.Context, body []byte) (any, error) {
	r, path, q, err := parseAuthz(body)
	if err != nil {
		return nil, err
	}
	if r.RequestMethod != "POST" {
		return allow(), nil
	}
	key := r.RequestMethod + " " + r.RequestURI
	switch {
	case path == "/networks/create":
		p.authz.release("create", key, 0)
	case path == "/containers/create":
		var resp struct {
			ID string `json:"Id"`
		}
		name := strings.TrimPrefix(q.Get("name"), "/")
		if name != "" && r.ResponseStatusCode/100 == 2 && json.Unmarshal(r.ResponseBody, &resp) == nil && resp.ID != "" {
			p.authz.mu.Lock()
			p.authz.containers[resp.ID] = name
			p.authz.mu.Unlock()
		}
	case startPath.MatchString(path), connectPath.MatchString(path):
		p.authz.release("start", key, 0)
	}
	return allow(), nil
}
