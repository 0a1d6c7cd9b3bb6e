package api

import (
	"context"
	"net/http"
	"time"

	"github.com/vxnet/vxnet/internal/model"
)

// Node is one host of the cluster, for GET /vxnet/nodes.
type Node struct {
	ID       string    `json:"ID"`
	Hostname string    `json:"Hostname"`
	Addr     string    `json:"Addr"`
	State    string    `json:"State"`
	LastSeen time.Time `json:"LastSeen"`
	Role     string    `json:"Role"`
	Self     bool      `json:"Self,omitempty"`
	// CertExpiry is when the node's cluster certificate runs out (zero
	// on an external store).
	CertExpiry time.Time `json:"CertExpiry,omitzero"`
	// Stale is set when the cluster store did not answer: the list is the
	// daemon's last view, read at AsOf.
	Stale bool      `json:"Stale,omitempty"`
	AsOf  time.Time `json:"AsOf"`
}

// JoinToken is the answer of GET|POST /vxnet/token.
type JoinToken struct {
	Token string `json:"Token"`
	// JoinAddr is this host's join service, ADDR:PORT.
	JoinAddr string `json:"JoinAddr"`
}

// ClusterBackend is the optional ability of a Backend in cluster mode,
// served under the vxnet-only prefix /vxnet/.
type ClusterBackend interface {
	Nodes(ctx context.Context) ([]Node, error)
	// RemoveNode removes a node; force removes it even while it is up.
	RemoveNode(ctx context.Context, ref string, force bool) error
	// JoinToken returns the cluster's join token; rotate replaces its
	// secret first.
	JoinToken(ctx context.Context, rotate bool) (JoinToken, error)
	// Leave leaves the cluster cleanly; the daemon stops afterwards.
	Leave(ctx context.Context) error
}

func (s *server) vxnetRoutes() {
	s.mux.HandleFunc("GET /vxnet/nodes", s.nodeList)
	s.mux.HandleFunc("DELETE /vxnet/nodes/{id}", s.nodeRemove)
	s.mux.HandleFunc("POST /vxnet/leave", s.leave)
	s.mux.HandleFunc("GET /vxnet/token", s.joinToken)
	s.mux.HandleFunc("POST /vxnet/token/rotate", s.joinToken)
}

func (s *server) joinToken(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.cluster(w)
	if !ok {
		return
	}
	tok, err := cb.JoinToken(r.Context(), r.Method == http.MethodPost)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, tok)
}

func (s *server) leave(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.cluster(w)
	if !ok {
		return
	}
	if err := cb.Leave(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) cluster(w http.ResponseWriter) (ClusterBackend, bool) {
	cb, ok := s.b.(ClusterBackend)
	if !ok {
		writeError(w, apiErr(model.ErrUnavailable, "this daemon is not in cluster mode: start it with --cluster-init, --cluster-join ADDR or --cluster-store etcd://HOST:2379"))
	}
	return cb, ok
}

func (s *server) nodeList(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.cluster(w)
	if !ok {
		return
	}
	nodes, err := cb.Nodes(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	if nodes == nil {
		nodes = []Node{}
	}
	writeJSON(w, http.StatusOK, nodes)
}

func (s *server) nodeRemove(w http.ResponseWriter, r *http.Request) {
	cb, ok := s.cluster(w)
	if !ok {
		return
	}
	if err := cb.RemoveNode(r.Context(), r.PathValue("id"), boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
