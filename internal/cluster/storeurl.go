package cluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vxnet/vxnet/internal/model"
)

// ParseStoreURL parses a --cluster-store value such as
// "etcd://h1:2379,h2:2379" into etcd endpoints ("h1:2379", "h2:2379"). The
// port defaults to 2379; IPv6 hosts go in brackets. Errors wrap
// model.ErrInvalid.
func ParseStoreURL(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil, fmt.Errorf("cluster: parse store URL %q: %w: want etcd://HOST[:PORT][,HOST[:PORT]...]", s, model.ErrInvalid)
	}
	if scheme != "etcd" {
		return nil, fmt.Errorf("cluster: parse store URL %q: %w: unsupported store %q, only etcd:// is supported", s, model.ErrInvalid, scheme)
	}
	rest = strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(rest, "/?#@") {
		return nil, fmt.Errorf("cluster: parse store URL %q: %w: no path, query or user info allowed", s, model.ErrInvalid)
	}
	if rest == "" {
		return nil, fmt.Errorf("cluster: parse store URL %q: %w: no host", s, model.ErrInvalid)
	}
	var eps []string
	for _, hp := range strings.Split(rest, ",") {
		ep, err := hostPort(hp, DefaultClientPort)
		if err != nil {
			return nil, fmt.Errorf("cluster: parse store URL %q: %w", s, err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// hostPort checks HOST[:PORT] and returns host:port with the default port
// filled in.
func hostPort(hp string, defPort int) (string, error) {
	hp = strings.TrimSpace(hp)
	if hp == "" {
		return "", fmt.Errorf("%w: empty host", model.ErrInvalid)
	}
	host, port := hp, ""
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
		host = hp[1 : len(hp)-1]
	} else if strings.Count(hp, ":") > 0 {
		return "", fmt.Errorf("%w: bad host:port %q (bracket IPv6 addresses)", model.ErrInvalid, hp)
	}
	if host == "" || strings.ContainsAny(host, " \t[]") {
		return "", fmt.Errorf("%w: bad host in %q", model.ErrInvalid, hp)
	}
	if port == "" {
		port = strconv.Itoa(defPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%w: bad port %q in %q", model.ErrInvalid, port, hp)
	}
	return net.JoinHostPort(host, port), nil
}
