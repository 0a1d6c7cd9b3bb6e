package firewall

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// procSysctl reads and writes /proc/sys. Network sysctls are resolved in the
// namespace of the calling thread, so inside netns.Do they are the
// namespace's own.
type procSysctl struct{}

// sysctlPath maps a sysctl name to its file. As sysctl(8) does, '.'
// separates components and '/' stands for a '.' inside one (an interface
// named eth0.5 is net.ipv4.conf.eth0/5.route_localnet).
func sysctlPath(name string) string {
	swapped := strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, name)
	return filepath.Join("/proc/sys", swapped)
}

func (procSysctl) get(name string) (string, error) {
	b, err := os.ReadFile(sysctlPath(name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (procSysctl) set(name, value string) error {
	return os.WriteFile(sysctlPath(name), []byte(value), 0o644)
}

// ensureBridgeNF makes sure bridged IPv4 (and, if v6, IPv6) traffic passes
// through the inet forward hook, or reports why it does not.
func (f *Firewall) ensureBridgeNF(v6 bool) error {
	names := []string{"net.bridge.bridge-nf-call-iptables"}
	if v6 {
		names = append(names, "net.bridge.bridge-nf-call-ip6tables")
	}
	var errs []error
	for _, name := range names {
		v, err := f.sysctl.get(name)
		if err == nil && v == "1" {
			continue
		}
		if err != nil {
			// Missing means br_netfilter is not loaded; we do not load modules.
			errs = append(errs, fmt.Errorf("%w: read %s: %w", ErrBridgeNetfilter, name, err))
			continue
		}
		if !f.setBNF {
			errs = append(errs, fmt.Errorf("%w: %s=%s", ErrBridgeNetfilter, name, v))
			continue
		}
		if err := f.sysctl.set(name, "1"); err != nil {
			errs = append(errs, fmt.Errorf("%w: set %s=1: %w", ErrBridgeNetfilter, name, err))
			continue
		}
		f.log.Info("enabled bridge netfilter", "sysctl", name)
	}
	return errors.Join(errs...)
}
