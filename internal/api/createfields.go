package api

import (
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/vxnet/vxnet/internal/model"
)

// A container create request carries some hundred fields. Each one is either
// honoured or, when set to anything but its default, refused with 400 naming
// it ("vxnet does not support HostConfig.Devices"): nothing is accepted and
// dropped. The check walks the request types by reflection, so a field added
// to them upstream is refused until someone implements it.
//
// Field names are the JSON names of the Engine API, prefixed by the part of
// the request they belong to: Config.User, HostConfig.Memory (the embedded
// Resources are HostConfig fields on the wire), and
// NetworkingConfig.EndpointsConfig.MacAddress for endpoint settings.

// supportedCreateFields are honoured by vxnet.
var supportedCreateFields = map[string]bool{
	"Config.Hostname": true,
	"Config.Image":    true,
	"Config.Cmd":      true,
	"Config.Env":      true,
	// Attach* and StdinOnce only say which streams a client will attach
	// to; the attach request itself decides (Docker treats them the same).
	"Config.AttachStdin":  true,
	"Config.AttachStdout": true,
	"Config.AttachStderr": true,
	"Config.StdinOnce":    true,
	"Config.Tty":          true,
	"Config.OpenStdin":    true,

	"HostConfig.NetworkMode": true,
	"HostConfig.AutoRemove":  true,
	// Restart policies (no, always, unless-stopped, on-failure[:N]).
	"HostConfig.RestartPolicy.Name":              true,
	"HostConfig.RestartPolicy.MaximumRetryCount": true,
	// The initial size of the TTY (Config.Tty).
	"HostConfig.ConsoleSize": true,

	"Config.ExposedPorts":        true,
	"HostConfig.PortBindings":    true,
	"HostConfig.PublishAllPorts": true,

	"NetworkingConfig.EndpointsConfig.IPAMConfig.IPv4Address": true,
	"NetworkingConfig.EndpointsConfig.IPAMConfig.IPv6Address": true,
	"NetworkingConfig.EndpointsConfig.Aliases":                true,
	// Endpoint settings: a requested MAC, link-local addresses, the
	// default-route priority, and the interface-name driver option (the
	// only driver option; others are refused by endpointRequest).
	"NetworkingConfig.EndpointsConfig.MacAddress":              true,
	"NetworkingConfig.EndpointsConfig.IPAMConfig.LinkLocalIPs": true,
	"NetworkingConfig.EndpointsConfig.GwPriority":              true,
	"NetworkingConfig.EndpointsConfig.DriverOpts":              true,

	// Resolver settings: resolv.conf, and the embedded DNS server's
	// upstreams on user-defined networks. Links: hosts entries on the
	// default bridge, a private DNS alias on user-defined networks.
	"HostConfig.Dns":        true,
	"HostConfig.DnsOptions": true,
	"HostConfig.DnsSearch":  true,
	"HostConfig.Links":      true,
	"HostConfig.ExtraHosts": true,

	// Binds and volumes (local driver); Mounts of type bind and volume.
	"HostConfig.Binds":  true,
	"HostConfig.Mounts": true,
	"Config.Volumes":    true,
	// Process, resources and confinement (runConfig checks them).
	"Config.Entrypoint":            true,
	"Config.User":                  true,
	"Config.WorkingDir":            true,
	"Config.Labels":                true,
	"Config.Domainname":            true,
	"Config.StopSignal":            true,
	"Config.StopTimeout":           true,
	"HostConfig.ReadonlyRootfs":    true,
	"HostConfig.Memory":            true,
	"HostConfig.MemorySwap":        true,
	"HostConfig.NanoCpus":          true,
	"HostConfig.CpuShares":         true,
	"HostConfig.PidsLimit":         true,
	"HostConfig.Ulimits":           true,
	"HostConfig.ShmSize":           true,
	"HostConfig.Sysctls":           true,
	"HostConfig.CapAdd":            true,
	"HostConfig.CapDrop":           true,
	"HostConfig.Privileged":        true,
	"HostConfig.Init":              true,
	"HostConfig.SecurityOpt":       true,
	"HostConfig.MaskedPaths":       true,
	"HostConfig.ReadonlyPaths":     true,
	"HostConfig.Tmpfs":             true,
	"HostConfig.MemoryReservation": true,
	"HostConfig.MemorySwappiness":  true,
	"HostConfig.OomKillDisable":    true,
	"HostConfig.CpuQuota":          true,
	"HostConfig.CpuPeriod":         true,
	"HostConfig.CpusetCpus":        true,
	"HostConfig.CpusetMems":        true,
	"HostConfig.OomScoreAdj":       true,
	"HostConfig.GroupAdd":          true,
	"HostConfig.Devices":           true,
	"HostConfig.PidMode":           true,
	"HostConfig.IpcMode":           true,
	"HostConfig.UTSMode":           true,
}

// pendingCreateFields are refused today and being implemented in parallel
// (DNS, names and several networks per container). When one
// lands, move its line to supportedCreateFields and honour the field.
var pendingCreateFields = map[string]string{
	"NetworkingConfig.EndpointsConfig.Links": "dns",
}

// defaultCreateValues are values the docker CLI sends for options not given,
// which mean the same as the field's zero value.
var defaultCreateValues = map[string]func(reflect.Value) bool{
	"HostConfig.RestartPolicy.Name": func(v reflect.Value) bool { return v.String() == "no" },
	"HostConfig.LogConfig.Type":     func(v reflect.Value) bool { return v.String() == "json-file" },
	"HostConfig.Isolation":          func(v reflect.Value) bool { return v.String() == "default" },
}

// checkCreateFields refuses the first field (in name order, so the answer is
// stable) that is set and not supported.
func checkCreateFields(req container.CreateRequest) error {
	var set []string
	if req.Config != nil {
		set = append(set, setFields("Config", reflect.ValueOf(*req.Config))...)
	}
	if req.HostConfig != nil {
		set = append(set, setFields("HostConfig", reflect.ValueOf(*req.HostConfig))...)
	}
	if req.NetworkingConfig != nil {
		for _, es := range req.NetworkingConfig.EndpointsConfig {
			if es != nil {
				set = append(set, setFields("NetworkingConfig.EndpointsConfig", reflect.ValueOf(*es))...)
			}
		}
	}
	sort.Strings(set)
	set = slices.Compact(set)
	for _, f := range set {
		if !supportedCreateFields[f] {
			return apiErr(model.ErrInvalid, "vxnet does not support %s", f)
		}
	}
	return nil
}

// setFields lists the fields of struct v (named prefix.JSONName) that hold
// something other than their default. Nested structs (LogConfig,
// RestartPolicy, IPAMConfig) are walked; embedded ones are flattened as JSON
// does.
func setFields(prefix string, v reflect.Value) []string {
	var out []string
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			out = append(out, setFields(prefix, fv)...)
			continue
		}
		name := sf.Name
		if tag, _, _ := strings.Cut(sf.Tag.Get("json"), ","); tag != "" && tag != "-" {
			name = tag
		}
		path := prefix + "." + name
		if supportedCreateFields[path] {
			continue
		}
		switch {
		case sf.Type.Kind() == reflect.Struct && !isLeafStruct(sf.Type):
			out = append(out, setFields(path, fv)...)
		case sf.Type.Kind() == reflect.Pointer && sf.Type.Elem().Kind() == reflect.Struct && !isLeafStruct(sf.Type.Elem()):
			if !fv.IsNil() {
				out = append(out, setFields(path, fv.Elem())...)
			}
		case !isUnset(path, fv):
			out = append(out, path)
		}
	}
	return out
}

// isLeafStruct is true for struct types that are values, not groups of
// options (netip.Addr and the like).
func isLeafStruct(t reflect.Type) bool {
	return t.PkgPath() != "" && !strings.HasPrefix(t.PkgPath(), "github.com/moby/moby/api/")
}

func isUnset(path string, v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Map, reflect.Slice:
		if v.Len() == 0 {
			return true
		}
	case reflect.Pointer:
		if v.IsNil() {
			return true
		}
	}
	if v.IsZero() {
		return true
	}
	if def := defaultCreateValues[path]; def != nil && def(v) {
		return true
	}
	return false
}
