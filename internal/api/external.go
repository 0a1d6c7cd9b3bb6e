package api

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/vxnet/vxnet/internal/model"
)

// ExternalAttach asks to attach a network namespace that another runtime
// made (a CNI runtime) to a vxnet network: POST /vxnet/externals.
type ExternalAttach struct {
	// Owner is model.OwnerCNI or model.OwnerDocker; Key is the owner's
	// identity of the attachment (CNI: "<container ID>/<ifname>").
	Owner string `json:"Owner"`
	Key   string `json:"Key"`
	// Network is a network name, ID or unique ID prefix.
	Network string `json:"Network"`
	// NetnsPath is the namespace to plumb (CNI_NETNS); IfName the
	// interface to make in it (CNI_IFNAME).
	NetnsPath string `json:"NetnsPath"`
	IfName    string `json:"IfName"`
	// SandboxKey is, for Docker, the container's namespace file from the
	// plugin's Join, where vxnet serves DNS (model.External.SandboxKey).
	SandboxKey string `json:"SandboxKey,omitempty"`
	// Name is the attachment's name in the network's hosts entries and
	// advertisements; Aliases are more names.
	Name    string   `json:"Name,omitempty"`
	Aliases []string `json:"Aliases,omitempty"`
	// IP asks for a static address (zero: allocate one); IP6 for a static
	// IPv6 address on a network with IPv6 (zero: allocate one there).
	IP  netip.Addr `json:"IP,omitzero"`
	IP6 netip.Addr `json:"IP6,omitzero"`
	// Reserved says IP and IP6 were reserved with ReserveAddress (Docker's
	// IPAM hands out the addresses before the endpoint exists); the
	// attachment takes the reservations over.
	Reserved bool `json:"Reserved,omitempty"`
}

// ExternalView is one attachment with its endpoint and network.
type ExternalView struct {
	External model.External `json:"External"`
	Endpoint model.Endpoint `json:"Endpoint"`
	Network  model.Network  `json:"Network"`
	// DefaultRoute is true when the attachment's gateway is the
	// namespace's default route.
	DefaultRoute bool `json:"DefaultRoute,omitempty"`
	// HostVeth is the host-namespace end of the veth, when it lives in the
	// host namespace (bridge networks); empty for overlay networks, whose
	// host end is in the network's own namespace.
	HostVeth string `json:"HostVeth,omitempty"`
}

// ExternalBackend is the optional ability of a Backend to attach namespaces
// made by other runtimes, served under /vxnet/externals.
type ExternalBackend interface {
	// AttachExternal attaches, or re-plumbs an attachment with the same
	// owner and key on the same network (idempotent).
	AttachExternal(ctx context.Context, req ExternalAttach) (ExternalView, error)
	// DetachExternal removes an attachment; a missing one is success.
	DetachExternal(ctx context.Context, owner, key string) error
	// CheckExternal verifies the attachment's interface is as plumbed.
	CheckExternal(ctx context.Context, owner, key string) (ExternalView, error)
	// ListExternal lists the attachments of an owner ("" for all).
	ListExternal(ctx context.Context, owner string) ([]ExternalView, error)
}

func (s *server) externalRoutes() {
	s.mux.HandleFunc("POST /vxnet/externals", s.externalAttach)
	s.mux.HandleFunc("GET /vxnet/externals", s.externalList)
	s.mux.HandleFunc("GET /vxnet/externals/check", s.externalCheck)
	s.mux.HandleFunc("DELETE /vxnet/externals", s.externalDetach)
}

func (s *server) externals(w http.ResponseWriter) (ExternalBackend, bool) {
	eb, ok := s.b.(ExternalBackend)
	if !ok {
		writeError(w, apiErr(model.ErrUnavailable, "this daemon does not attach external namespaces"))
	}
	return eb, ok
}

func (s *server) externalAttach(w http.ResponseWriter, r *http.Request) {
	eb, ok := s.externals(w)
	if !ok {
		return
	}
	var req ExternalAttach
	if err := decodeJSON(r, &req, false); err != nil {
		writeError(w, err)
		return
	}
	v, err := eb.AttachExternal(r.Context(), req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) externalDetach(w http.ResponseWriter, r *http.Request) {
	eb, ok := s.externals(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	if err := eb.DetachExternal(r.Context(), q.Get("owner"), q.Get("key")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) externalCheck(w http.ResponseWriter, r *http.Request) {
	eb, ok := s.externals(w)
	if !ok {
		return
	}
	q := r.URL.Query()
	v, err := eb.CheckExternal(r.Context(), q.Get("owner"), q.Get("key"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *server) externalList(w http.ResponseWriter, r *http.Request) {
	eb, ok := s.externals(w)
	if !ok {
		return
	}
	vs, err := eb.ListExternal(r.Context(), r.URL.Query().Get("owner"))
	if err != nil {
		writeError(w, err)
		return
	}
	if vs == nil {
		vs = []ExternalView{}
	}
	writeJSON(w, http.StatusOK, vs)
}
