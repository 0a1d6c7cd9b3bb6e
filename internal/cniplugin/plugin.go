// Package cniplugin is the vxnet CNI plugin (CNI spec 1.1: ADD, DEL, CHECK,
// STATUS, GC, VERSION). It holds no state and touches no kernel object
// itself: every command is one request to the local vxnet daemon's API
// socket (the vxnet-only endpoints under /vxnet/externals), which attaches
// the runtime's network namespace to a vxnet network (bridge or overlay)
// as an external attachment, keyed by container ID and interface name.
// The result it prints is what the daemon plumbed: the interface in the
// namespace (and the host end of the veth on bridge networks, which
// chained plugins such as bandwidth look for), its address, gateway,
// routes and the configuration's DNS. On networks with IPv6 the result
// carries the IPv6 address (and its default route) beside the IPv4 one,
// or alone on IPv6-only networks.
//
// Errors carry CNI's codes: 2 for a field vxnet does not take (ipam, a
// previous result: vxnet must be first in a chain), 3 for an unknown
// attachment on CHECK, 4 for bad CNI_ARGS or CNI_IFNAME, 6 for an
// undecodable configuration, 7 for a network the daemon refuses or does
// not have, 8 for a bad CNI_NETNS, 11 when the daemon is unreachable (try
// again), 50 from STATUS when the daemon or the network is not there.
package cniplugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/model"
)

// DefaultSocket is the daemon's API socket when the configuration names none.
const DefaultSocket = "/run/vxnet/vxnet.sock"

// Conf is the plugin's network configuration.
type Conf struct {
	types.PluginConf
	// Network is the vxnet network (name, ID or unique ID prefix); empty
	// means the configuration's name.
	Network string `json:"network,omitempty"`
	// Socket is the vxnet daemon's API socket (default DefaultSocket).
	Socket string `json:"socket,omitempty"`
}

// Args are the CNI_ARGS keys the plugin reads. A name for the attachment's
// hosts entries and advertisement comes from VXNET_NAME, else
// K8S_POD_NAME, else "cni-" and the container ID's first 12 characters.
type Args struct {
	types.CommonArgs
	VXNET_NAME                 types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
}

// Funcs are the plugin's commands, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

func loadConf(data []byte) (*Conf, error) {
	var c Conf
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "vxnet: decode network configuration", err.Error())
	}
	if c.IPAM.Type != "" {
		return nil, types.NewError(types.ErrUnsupportedField, "vxnet: the ipam field is not supported: vxnet allocates addresses itself; remove it", "")
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if c.Network == "" {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "vxnet: the configuration names no network (set name or network)", "")
	}
	if c.Socket == "" {
		c.Socket = DefaultSocket
	}
	return &c, nil
}

func key(args *skel.CmdArgs) string { return args.ContainerID + "/" + args.IfName }

var (
	notNameChar = regexp.MustCompile(`[^a-zA-Z0-9_.-]`)
	validName   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
)

// attachName picks the attachment's name from CNI_ARGS or the container ID.
func attachName(args *skel.CmdArgs) (string, error) {
	var a Args
	if err := types.LoadArgs(args.Args, &a); err != nil {
		return "", types.NewError(types.ErrInvalidEnvironmentVariables, "vxnet: CNI_ARGS", err.Error())
	}
	name := string(a.VXNET_NAME)
	if name == "" {
		name = string(a.K8S_POD_NAME)
	}
	if name == "" {
		id := notNameChar.ReplaceAllString(args.ContainerID, "")
		if len(id) > 12 {
			id = id[:12]
		}
		name = "cni-" + id
	}
	if !validName.MatchString(name) {
		return "", types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("vxnet: invalid attachment name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name), "")
	}
	return name, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if c.RawPrevResult != nil {
		return types.NewError(types.ErrUnsupportedField, "vxnet: got a previous result: vxnet must be the first plugin of a chain", "")
	}
	if err := checkNetns(args.Netns); err != nil {
		return err
	}
	name, err := attachName(args)
	if err != nil {
		return err
	}
	req := api.ExternalAttach{Owner: model.OwnerCNI, Key: key(args), Network: c.Network,
		NetnsPath: args.Netns, IfName: args.IfName, Name: name}
	var v api.ExternalView
	if err := newClient(c.Socket).do(http.MethodPost, "/vxnet/externals", nil, req, &v, types.ErrInvalidNetworkConfig); err != nil {
		return err
	}
	return types.PrintResult(Result(v, c, args.Netns), c.CNIVersion)
}

// Result turns an attachment into the CNI result: one IP entry per
// address of the endpoint (IPv4, IPv6 or both), each with its family's
// gateway, and the default routes the interface really has (on bridge
// networks, one per family through that family's gateway).
func Result(v api.ExternalView, c *Conf, netnsPath string) *current.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion, DNS: c.DNS}
	if v.HostVeth != "" {
		r.Interfaces = append(r.Interfaces, &current.Interface{Name: v.HostVeth})
	}
	idx := len(r.Interfaces)
	ep := v.Endpoint
	r.Interfaces = append(r.Interfaces, &current.Interface{Name: v.External.IfName, Mac: ep.MAC.String(), Mtu: ep.MTU, Sandbox: netnsPath})
	add := func(addr netip.Prefix, gw netip.Addr) {
		if !addr.IsValid() {
			return
		}
		ipc := &current.IPConfig{Interface: current.Int(idx), Address: net.IPNet{
			IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen())}}
		if gw.IsValid() {
			ipc.Gateway = gw.AsSlice()
		}
		r.IPs = append(r.IPs, ipc)
		if v.DefaultRoute && gw.IsValid() {
			bits := gw.BitLen()
			r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}, GW: gw.AsSlice()})
		}
	}
	add(ep.Addr, ep.Gateway)
	add(ep.Addr6, ep.Gateway6)
	return r
}

func cmdDel(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	q := url.Values{"owner": {model.OwnerCNI}, "key": {key(args)}}
	return newClient(c.Socket).do(http.MethodDelete, "/vxnet/externals", q, nil, nil, types.ErrInternal)
}

func cmdCheck(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkNetns(args.Netns); err != nil {
		return err
	}
	q := url.Values{"owner": {model.OwnerCNI}, "key": {key(args)}}
	var v api.ExternalView
	if err := newClient(c.Socket).do(http.MethodGet, "/vxnet/externals/check", q, nil, &v, types.ErrUnknownContainer); err != nil {
		return err
	}
	if v.External.NetnsPath != args.Netns {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("vxnet: attachment %s is in namespace %s, not %s", key(args), v.External.NetnsPath, args.Netns), "")
	}
	return nil
}

// cmdStatus reports whether the daemon answers and has the network.
func cmdStatus(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	err = newClient(c.Socket).do(http.MethodGet, "/networks/"+url.PathEscape(c.Network), nil, nil, nil, types.ErrPluginNotAvailable)
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(types.ErrPluginNotAvailable, te.Msg, te.Details)
	}
	return err
}

// cmdGC removes this network's CNI attachments that are not in the
// runtime's list of valid attachments.
func cmdGC(args *skel.CmdArgs) error {
	c, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	cl := newClient(c.Socket)
	var net struct{ ID string }
	if err := cl.do(http.MethodGet, "/networks/"+url.PathEscape(c.Network), nil, nil, &net, types.ErrInvalidNetworkConfig); err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range c.ValidAttachments {
		valid[a.ContainerID+"/"+a.IfName] = true
	}
	var all []api.ExternalView
	if err := cl.do(http.MethodGet, "/vxnet/externals", url.Values{"owner": {model.OwnerCNI}}, nil, &all, types.ErrInternal); err != nil {
		return err
	}
	var errs []error
	for _, v := range all {
		if v.External.NetworkID != net.ID || valid[v.External.Key] {
			continue
		}
		q := url.Values{"owner": {model.OwnerCNI}, "key": {v.External.Key}}
		errs = append(errs, cl.do(http.MethodDelete, "/vxnet/externals", q, nil, nil, types.ErrInternal))
	}
	return errors.Join(errs...)
}

func checkNetns(path string) error {
	if path == "" {
		return types.NewError(types.ErrInvalidNetNS, "vxnet: CNI_NETNS is empty", "")
	}
	if _, err := os.Stat(path); err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("vxnet: network namespace %s", path), err.Error())
	}
	return nil
}

// client speaks to the daemon's API socket.
type client struct {
	socket string
	hc     *http.Client
}

func newClient(socket string) *client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &client{socket: socket, hc: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// do sends one request; an error answer becomes a CNI error with the code
// for its HTTP status (notFound is the code for 404, which depends on the
// command).
func (c *client) do(method, path string, q url.Values, body, out any, notFound uint) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return types.NewError(types.ErrInternal, "vxnet: encode request", err.Error())
		}
		rd = bytes.NewReader(b)
	}
	u := "http://vxnet" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return types.NewError(types.ErrInternal, "vxnet: build request", err.Error())
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("vxnet: daemon not reachable at %s", c.socket), err.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		var m struct{ Message string }
		json.Unmarshal(data, &m)
		msg := strings.TrimSpace(m.Message)
		if msg == "" {
			msg = resp.Status
		}
		return types.NewError(codeFor(resp.StatusCode, notFound), "vxnet: "+msg, "")
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return types.NewError(types.ErrDecodingFailure, "vxnet: decode daemon answer", err.Error())
		}
	}
	return nil
}

func codeFor(status int, notFound uint) uint {
	switch status {
	case http.StatusNotFound:
		return notFound
	case http.StatusBadRequest, http.StatusForbidden:
		return types.ErrInvalidNetworkConfig
	case http.StatusServiceUnavailable:
		return types.ErrTryAgainLater
	}
	return types.ErrInternal
}
