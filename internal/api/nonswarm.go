package api

import (
	"net/http"

	"github.com/moby/moby/api/types/plugin"

	"github.com/vxnet/vxnet/internal/model"
)

// vxnet is never a swarm node and has no plugins. Docker's client libraries
// and the test harnesses built on them ask anyway; they get what a Docker
// daemon outside a swarm answers.

// errNotSwarmManager is Docker's answer to swarm calls on a node that is not
// a manager (503).
var errNotSwarmManager = apiErr(model.ErrUnavailable, `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`)

func (s *server) nonSwarmRoutes() {
	m := s.mux
	m.HandleFunc("GET /plugins", s.pluginList)
	m.HandleFunc("GET /plugins/{$}", s.pluginList)
	m.HandleFunc("GET /plugins/{name}/json", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(model.ErrNotFound, "plugin %q not found", r.PathValue("name")))
	})
	notManager := func(w http.ResponseWriter, r *http.Request) { writeError(w, errNotSwarmManager) }
	for _, p := range []string{"GET /swarm", "GET /swarm/unlockkey", "POST /swarm/update", "POST /swarm/unlock"} {
		m.HandleFunc(p, notManager)
	}
	m.HandleFunc("POST /swarm/leave", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(model.ErrUnavailable, "This node is not part of a swarm"))
	})
	refuse := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(model.ErrInvalid, "vxnet does not support swarm mode (%s)", r.URL.Path))
	}
	m.HandleFunc("POST /swarm/init", refuse)
	m.HandleFunc("POST /swarm/join", refuse)
	// The swarm objects: every call on a node outside a swarm is refused
	// the same way.
	for _, obj := range []string{"services", "tasks", "nodes", "secrets", "configs"} {
		m.HandleFunc("/"+obj, notManager)
		m.HandleFunc("/"+obj+"/", notManager)
	}
}

func (s *server) pluginList(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := f.validate("capability", "enable"); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, plugin.ListResponse{})
}
