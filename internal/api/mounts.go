package api

import (
	"path"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/vxnet/vxnet/internal/model"
)

// createMounts reads a create request's binds and volumes: HostConfig.Binds
// ("SRC:DST[:OPTS]", SRC a host path or a volume name), HostConfig.Mounts of
// type bind and volume, and Config.Volumes (anonymous volumes, from
// `-v /path`). A volume Name "" is anonymous. Two mounts on one destination
// are refused, as Docker refuses them.
func createMounts(req container.CreateRequest) ([]model.Mount, error) {
	var out []model.Mount
	if hc := req.HostConfig; hc != nil {
		for _, b := range hc.Binds {
			m, err := parseBind(b)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		for _, mt := range hc.Mounts {
			if mt.Type == mount.TypeTmpfs {
				continue // a run option (runConfig)
			}
			m, err := parseMount(mt)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	seen := map[string]bool{}
	for _, m := range out {
		if seen[m.Destination] {
			return nil, apiErr(model.ErrInvalid, "Duplicate mount point: %s", m.Destination)
		}
		seen[m.Destination] = true
	}
	if req.Config != nil {
		for dst := range req.Config.Volumes {
			if !path.IsAbs(dst) {
				return nil, apiErr(model.ErrInvalid, "invalid volume specification: '%s': invalid mount config for type \"volume\": invalid mount path: '%s' mount path must be absolute", dst, dst)
			}
			dst = path.Clean(dst)
			if seen[dst] { // a bind or named volume there wins, as in Docker
				continue
			}
			seen[dst] = true
			out = append(out, model.Mount{Type: "volume", Destination: dst, Anonymous: true})
		}
	}
	return out, nil
}

var propagations = map[string]bool{"rprivate": true, "private": true, "rshared": true, "shared": true, "rslave": true, "slave": true}

// parseBind reads one -v/HostConfig.Binds entry.
func parseBind(spec string) (model.Mount, error) {
	bad := func(why string) (model.Mount, error) {
		return model.Mount{}, apiErr(model.ErrInvalid, "invalid volume specification: '%s'%s", spec, why)
	}
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return bad("")
	}
	src, dst := parts[0], parts[1]
	if !path.IsAbs(dst) {
		return bad(": invalid mount config for type \"bind\": invalid mount path: '" + dst + "' mount path must be absolute")
	}
	m := model.Mount{Destination: path.Clean(dst)}
	if path.IsAbs(src) {
		m.Type, m.Source, m.CreateSource = "bind", path.Clean(src), true
	} else {
		m.Type, m.Name = "volume", src
	}
	if len(parts) == 3 {
		rw := 0
		for _, o := range strings.Split(parts[2], ",") {
			switch {
			case o == "ro" || o == "rw":
				rw++
				m.ReadOnly = o == "ro"
			case propagations[o]:
				if m.Type != "bind" {
					return bad(": propagation " + o + " applies to binds only")
				}
				if m.Propagation != "" {
					return bad("")
				}
				m.Propagation = o
			case o == "nocopy":
				if m.Type != "volume" {
					return bad(": nocopy applies to volumes only")
				}
				m.NoCopy = true
			case o == "z" || o == "Z":
				return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support the SELinux bind option %q (%s)", o, spec)
			default:
				return bad(": unknown option " + o)
			}
		}
		if rw > 1 {
			return bad("")
		}
	}
	return m, nil
}

// parseMount reads one HostConfig.Mounts entry (bind or volume).
func parseMount(mt mount.Mount) (model.Mount, error) {
	bad := func(format string, args ...any) (model.Mount, error) {
		return model.Mount{}, apiErr(model.ErrInvalid, "invalid mount config for type \"%s\": "+format, append([]any{mt.Type}, args...)...)
	}
	if mt.Target == "" {
		return bad("field Target must not be empty")
	}
	if !path.IsAbs(mt.Target) {
		return bad("invalid mount path: '%s' mount path must be absolute", mt.Target)
	}
	if mt.Consistency != "" && mt.Consistency != mount.ConsistencyDefault && mt.Consistency != mount.ConsistencyFull {
		return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.Consistency %q", mt.Consistency)
	}
	if mt.ImageOptions != nil || mt.TmpfsOptions != nil || mt.ClusterOptions != nil {
		return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support these options for a mount of type %q", mt.Type)
	}
	m := model.Mount{Destination: path.Clean(mt.Target), ReadOnly: mt.ReadOnly}
	switch mt.Type {
	case mount.TypeBind:
		if mt.VolumeOptions != nil {
			return bad("field VolumeOptions must not be specified")
		}
		if mt.Source == "" {
			return bad("field Source must not be empty")
		}
		if !path.IsAbs(mt.Source) {
			return bad("invalid mount path: '%s' mount path must be absolute", mt.Source)
		}
		m.Type, m.Source = "bind", path.Clean(mt.Source)
		if bo := mt.BindOptions; bo != nil {
			if bo.NonRecursive || bo.ReadOnlyNonRecursive || bo.ReadOnlyForceRecursive {
				return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.BindOptions other than Propagation and CreateMountpoint")
			}
			if bo.Propagation != "" {
				if !propagations[string(bo.Propagation)] {
					return bad("invalid propagation mode: %s", bo.Propagation)
				}
				m.Propagation = string(bo.Propagation)
			}
			m.CreateSource = bo.CreateMountpoint
		}
	case mount.TypeVolume:
		if mt.BindOptions != nil {
			return bad("field BindOptions must not be specified")
		}
		m.Type, m.Name = "volume", mt.Source
		m.Anonymous = mt.Source == ""
		if vo := mt.VolumeOptions; vo != nil {
			m.NoCopy = vo.NoCopy
			if vo.Subpath != "" || len(vo.Labels) > 0 || (vo.DriverConfig != nil && vo.DriverConfig.Name != "" && vo.DriverConfig.Name != "local") ||
				(vo.DriverConfig != nil && len(vo.DriverConfig.Options) > 0) {
				return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support HostConfig.Mounts.VolumeOptions other than NoCopy (local driver)")
			}
		}
	default:
		return model.Mount{}, apiErr(model.ErrInvalid, "vxnet does not support mounts of type %q", mt.Type)
	}
	return m, nil
}

// mountPoints are a container's mounts as inspect and ps show them.
func mountPoints(ms []model.Mount) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range ms {
		mp := container.MountPoint{Type: mount.Type(m.Type), Source: m.Source, Destination: m.Destination, RW: !m.ReadOnly}
		switch m.Type {
		case "volume":
			mp.Name, mp.Driver = m.Name, "local"
		case "bind":
			mp.Propagation = mount.Propagation(m.Propagation)
			if mp.Propagation == "" {
				mp.Propagation = mount.PropagationRPrivate
			}
		}
		out = append(out, mp)
	}
	return out
}
