package daemon

// The API's listeners, as dockerd makes them: -H may be given several
// times, unix:///path (mode 0660, group --group) or tcp://ADDR[:PORT].
// The API gives root on the host, so TCP is TLS only: --tlsverify requires
// client certificates signed by --tlscacert; --tls serves TLS without
// client authentication; plain TCP refuses to start unless --tls=false is
// given explicitly, and then warns. Defaults follow dockerd: port 2376 with
// TLS (2375 without), certificate files ca.pem, cert.pem and key.pem in
// $DOCKER_CERT_PATH or ~/.docker, --tlsverify on when $DOCKER_TLS_VERIFY is
// set.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vxnet/vxnet/internal/api"
)

// Default ports of the API over TCP, as dockerd's.
const (
	DefaultTLSPort   = 2376
	DefaultPlainPort = 2375
)

// APIConfig is the API listener configuration, from flags.
type APIConfig struct {
	Hosts  []string // -H, repeated
	TLS    bool     // --tls
	TLSSet bool     // --tls given explicitly (so --tls=false is a choice)
	// TLSFlags lists the TLS flags given on the command line (refused
	// without a tcp:// address: they would do nothing).
	TLSFlags  []string
	TLSVerify bool // --tlsverify (implies --tls)
	TLSCACert string
	TLSCert   string
	TLSKey    string
	Group     string // --group of the unix sockets
	GroupSet  bool
}

// DefaultSocket is the API's unix socket when no -H is given.
const DefaultSocket = "unix:///run/vxnet/vxnet.sock"

// dockerCertPath is where dockerd looks for TLS files by default.
func dockerCertPath() string {
	if p := os.Getenv("DOCKER_CERT_PATH"); p != "" {
		return p
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".docker")
}

// listenAddr is one parsed -H value.
type listenAddr struct {
	network string // "unix" or "tcp"
	addr    string // socket path, or host:port
}

func (l listenAddr) String() string { return l.network + "://" + l.addr }

// parseHost turns an -H value into a listen address; tlsOn picks the
// default TCP port.
func parseHost(h string, tlsOn bool) (listenAddr, error) {
	switch {
	case strings.HasPrefix(h, "unix://"):
		p := strings.TrimPrefix(h, "unix://")
		if p == "" {
			return listenAddr{}, fmt.Errorf("invalid -H %q: empty socket path", h)
		}
		return listenAddr{"unix", p}, nil
	case strings.HasPrefix(h, "/"):
		return listenAddr{"unix", h}, nil
	case strings.HasPrefix(h, "tcp://"):
		hp := strings.TrimSuffix(strings.TrimPrefix(h, "tcp://"), "/")
		if strings.ContainsAny(hp, "/?#@") {
			return listenAddr{}, fmt.Errorf("invalid -H %q: no path allowed", h)
		}
		port := DefaultPlainPort
		if tlsOn {
			port = DefaultTLSPort
		}
		host, p, err := net.SplitHostPort(hp)
		if err != nil {
			if strings.Count(hp, ":") > 1 && !strings.HasPrefix(hp, "[") {
				return listenAddr{}, fmt.Errorf("invalid -H %q: bracket IPv6 addresses", h)
			}
			host, p = strings.Trim(hp, "[]"), strconv.Itoa(port)
		}
		if p == "" {
			p = strconv.Itoa(port)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return listenAddr{}, fmt.Errorf("invalid -H %q: bad port %q", h, p)
		}
		return listenAddr{"tcp", net.JoinHostPort(host, p)}, nil
	}
	return listenAddr{}, fmt.Errorf("invalid -H %q: want unix:///path or tcp://ADDR[:PORT]", h)
}

// apiPlan is the checked API configuration: where to listen and with what
// TLS.
type apiPlan struct {
	addrs    []listenAddr
	tls      *tls.Config // nil: no TLS on the TCP listeners
	plainTCP bool        // TCP without TLS, explicitly asked for
	gid      int         // group of the unix sockets (-1: leave root's)
	tcpPorts []int
}

// planAPI checks the API flags and loads the TLS files; it makes nothing.
func planAPI(c APIConfig) (*apiPlan, error) {
	hosts := c.Hosts
	if len(hosts) == 0 {
		hosts = []string{DefaultSocket}
	}
	tlsOn := c.TLS || c.TLSVerify
	p := &apiPlan{gid: -1}
	for _, h := range hosts {
		a, err := parseHost(h, tlsOn)
		if err != nil {
			return nil, err
		}
		p.addrs = append(p.addrs, a)
		if a.network == "tcp" {
			_, ps, _ := net.SplitHostPort(a.addr)
			n, _ := strconv.Atoi(ps)
			p.tcpPorts = append(p.tcpPorts, n)
		}
	}
	hasTCP := len(p.tcpPorts) > 0
	if !hasTCP && len(c.TLSFlags) > 0 {
		return nil, fmt.Errorf("--%s applies to -H tcp:// addresses only (the unix socket is guarded by its mode and --group)", c.TLSFlags[0])
	}
	switch {
	case hasTCP && !tlsOn && !c.TLSSet:
		return nil, fmt.Errorf("-H %s: the API over TCP gives root on this host and needs TLS: give --tlsverify with --tlscacert, --tlscert and --tlskey "+
			"(or --tls=false to serve it unencrypted to anyone who can reach it)", firstTCP(p.addrs))
	case hasTCP && !tlsOn:
		p.plainTCP = true
	case tlsOn && hasTCP:
		cfg, err := loadServerTLS(c)
		if err != nil {
			return nil, err
		}
		p.tls = cfg
	}
	if c.Group != "" {
		g, err := user.LookupGroup(c.Group)
		switch {
		case err == nil:
			gid, err := strconv.Atoi(g.Gid)
			if err != nil {
				return nil, fmt.Errorf("--group %s: bad gid %q", c.Group, g.Gid)
			}
			p.gid = gid
		case c.GroupSet:
			return nil, fmt.Errorf("--group %s: %v", c.Group, err)
		}
	}
	return p, nil
}

func firstTCP(as []listenAddr) string {
	for _, a := range as {
		if a.network == "tcp" {
			return a.String()
		}
	}
	return ""
}

// loadServerTLS reads the server certificate and, with --tlsverify, the CA
// that client certificates must chain to.
func loadServerTLS(c APIConfig) (*tls.Config, error) {
	dir := dockerCertPath()
	or := func(s, def string) string {
		if s != "" {
			return s
		}
		return filepath.Join(dir, def)
	}
	certFile, keyFile, caFile := or(c.TLSCert, "cert.pem"), or(c.TLSKey, "key.pem"), or(c.TLSCACert, "ca.pem")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tlscert %s / --tlskey %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if c.TLSVerify {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tlscacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tlscacert %s: no PEM certificate in it", caFile)
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// listen opens every listener of the plan. On error it closes what it
// opened.
func (p *apiPlan) listen(log *slog.Logger) ([]net.Listener, error) {
	var out []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range out {
			l.Close()
		}
		return nil, err
	}
	for _, a := range p.addrs {
		switch a.network {
		case "unix":
			l, err := api.ListenUnix(a.addr)
			if err != nil {
				return fail(err)
			}
			out = append(out, l)
			if p.gid >= 0 {
				if err := os.Chown(a.addr, 0, p.gid); err != nil {
					return fail(fmt.Errorf("--group: chown %s: %w", a.addr, err))
				}
			}
		case "tcp":
			l, err := net.Listen("tcp", a.addr)
			if err != nil {
				return fail(fmt.Errorf("listen on %s: %w", a, err))
			}
			if p.tls != nil {
				l = tls.NewListener(l, p.tls)
			} else {
				log.Warn("API listening on "+a.String()+" WITHOUT TLS (--tls=false): anyone who can reach it controls this host as root", "addr", a.String())
			}
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return fail(errors.New("no API listener"))
	}
	return out, nil
}

// unixSockets are the plan's socket paths (removed at shutdown).
func (p *apiPlan) unixSockets() []string {
	var out []string
	for _, a := range p.addrs {
		if a.network == "unix" {
			out = append(out, a.addr)
		}
	}
	return out
}
