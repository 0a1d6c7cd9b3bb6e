// Package dockerplugin serves Docker Engine's remote network driver and
// IPAM driver protocols (libnetwork's remote API: JSON over HTTP on a unix
// socket that dockerd finds as <plugin dir>/vxnet.sock), so that
//
//	docker network create -d vxnet --ipam-driver vxnet [--subnet S] prod
//
// on every Docker host maps to one cluster-wide vxnet overlay network named
// prod (same VNI and subnet everywhere: the first create defines it, later
// creates on other hosts join it, conflicting options are refused), and
// containers that dockerd runs on it are external attachments of the
// engine (owner "docker"), advertised and reconciled like vxnet's own.
//
// The protocols never tell a plugin the network's name, so the plugin is
// also a Docker authorization plugin (dockerd --authorization-plugin=vxnet):
// it reads the name from the POST /networks/create request that is being
// served and the container name from POST /containers/create, then lets
// every request through. See docs/plugins.md.
package dockerplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// Engine is what the plugin needs from vxnet's engine.
type Engine interface {
	CreateNetwork(ctx context.Context, req api.NetworkCreate) (model.Network, error)
	InspectNetwork(ctx context.Context, ref string, verbose bool) (api.NetworkView, error)
	ListNetworks(ctx context.Context) ([]api.NetworkView, error)
	RemoveNetwork(ctx context.Context, ref string) error
	ReserveAddress(ctx context.Context, netRef string, ip netip.Addr, v6 bool) (netip.Prefix, error)
	ReleaseAddress(ctx context.Context, netRef string, ip netip.Addr) error
	api.ExternalBackend
}

// Name is the driver's name for -d and --ipam-driver (the socket's name).
const Name = "vxnet"

// ContentType is the plugin protocol's media type.
const ContentType = "application/vnd.docker.plugins.v1.2+json"

// Plugin serves the protocols for one dockerd.
type Plugin struct {
	eng Engine
	log *slog.Logger

	mu sync.Mutex
	// pending are addresses handed out by RequestAddress and not yet
	// taken over by an endpoint (by address).
	pending map[netip.Addr]string
	// endpoints are Docker endpoints created and not yet joined.
	endpoints map[string]endpointReq
	authz     authz
}

type endpointReq struct {
	netID string
	addr  netip.Prefix
	addr6 netip.Prefix // invalid on networks without IPv6
}

// New returns the plugin for eng.
func New(eng Engine, log *slog.Logger) *Plugin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Plugin{eng: eng, log: log, pending: map[netip.Addr]string{}, endpoints: map[string]endpointReq{},
		authz: authz{containers: map[string]string{}}}
}

// Handler returns the HTTP handler of the plugin socket.
func (p *Plugin) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("POST /Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string][]string{"Implements": {"NetworkDriver", "IpamDriver", "authz"}})
	})
	calls := map[string]func(context.Context, []byte) (any, error){
		"NetworkDriver.GetCapabilities": func(context.Context, []byte) (any, error) {
			return map[string]string{"Scope": "local", "ConnectivityScope": "global"}, nil
		},
		"NetworkDriver.CreateNetwork":               p.createNetwork,
		"NetworkDriver.DeleteNetwork":               ok,
		"NetworkDriver.CreateEndpoint":              p.createEndpoint,
		"NetworkDriver.EndpointOperInfo":            p.endpointInfo,
		"NetworkDriver.DeleteEndpoint":              p.deleteEndpoint,
		"NetworkDriver.Join":                        p.join,
		"NetworkDriver.Leave":                       ok,
		"NetworkDriver.DiscoverNew":                 ok,
		"NetworkDriver.DiscoverDelete":              ok,
		"NetworkDriver.ProgramExternalConnectivity": ok,
		"NetworkDriver.RevokeExternalConnectivity":  ok,
		"NetworkDriver.AllocateNetwork":             swarmOnly,
		"NetworkDriver.FreeNetwork":                 swarmOnly,
		"IpamDriver.GetCapabilities": func(context.Context, []byte) (any, error) {
			return map[string]bool{"RequiresMACAddress": false, "RequiresRequestReplay": false}, nil
		},
		"IpamDriver.GetDefaultAddressSpaces": func(context.Context, []byte) (any, error) {
			return map[string]string{"LocalDefaultAddressSpace": "vxnet", "GlobalDefaultAddressSpace": "vxnet"}, nil
		},
		"IpamDriver.RequestPool":    p.requestPool,
		"IpamDriver.ReleasePool":    p.releasePool,
		"IpamDriver.RequestAddress": p.requestAddress,
		"IpamDriver.ReleaseAddress": p.releaseAddress,
		"AuthZPlugin.AuthZReq":      p.authzReq,
		"AuthZPlugin.AuthZRes":      p.authzRes,
	}
	for name, fn := range calls {
		m.HandleFunc("POST /"+name, func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
			if err != nil {
				replyErr(w, err)
				return
			}
			out, err := fn(r.Context(), body)
			if err != nil {
				p.log.Warn("docker plugin call refused", "call", name, "err", err)
				replyErr(w, err)
				return
			}
			p.log.Debug("docker plugin call", "call", name)
			reply(w, out)
		})
	}
	return m
}

func ok(context.Context, []byte) (any, error) { return struct{}{}, nil }

func swarmOnly(context.Context, []byte) (any, error) {
	return nil, fmt.Errorf("vxnet networks are not swarm-scoped: create them with docker network create -d vxnet on each host")
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", ContentType)
	json.NewEncoder(w).Encode(v)
}

// replyErr answers with the protocol's error body; dockerd shows Err.
func replyErr(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", ContentType)
	w.WriteHeader(http.StatusInternalServerError)
	json.NewEncoder(w).Encode(map[string]string{"Err": "vxnet: " + strings.ReplaceAll(err.Error(), "\n", " ")})
}

func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	return nil
}
