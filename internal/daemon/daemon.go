// Package daemon wires a vxnet daemon together: it parses the daemon's
// configuration, opens the local store, builds the drivers, allocator,
// runtime and firewall, starts the engine and serves the API on a unix
// socket until SIGTERM or SIGINT.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxnet/vxnet/internal/api"
	"github.com/vxnet/vxnet/internal/engine"
	"github.com/vxnet/vxnet/internal/ipam"
	"github.com/vxnet/vxnet/internal/runtime"
	"github.com/vxnet/vxnet/internal/store"
)

// Config is the daemon's configuration, from flags.
type Config struct {
	// API is where the Engine API listens (-H, TLS flags, --group).
	API      APIConfig
	DataRoot string
	ExecRoot string
	BIP      string // default bridge gateway/prefix, e.g. 172.17.0.1/16
	// DefaultAddressPools are --default-address-pool values
	// (base=PREFIX,size=BITS) for networks created without --subnet.
	DefaultAddressPools []string
	LogLevel            string
	// Firewall table name (one per daemon; tests use the default since
	// each daemon runs in its own network namespace).
	FirewallTable string
	Cluster       ClusterConfig
	// DockerPluginDir is where the Docker plugin socket vxnet.sock is
	// served ("" turns it off); see dockerplugin.go.
	DockerPluginDir    string
	dockerPluginDirSet bool
	// DNS are the --dns servers the embedded DNS server forwards to
	// (default: the host's resolvers).
	DNS []string
	// Runtime is "containerd" (default) or "runc" (vxnet's own shim, for
	// data roots made before containerd).
	Runtime string
	// Containerd is the socket of a running containerd; "" makes the
	// daemon run its own under its data and exec roots.
	Containerd string
	// ContainerdNamespace is this daemon's containerd namespace.
	ContainerdNamespace string
	// InsecureRegistries may be spoken to over plain HTTP (host[:port]
	// or CIDR), as Docker's --insecure-registry.
	InsecureRegistries []string

	onLeave func() // stops the daemon after a clean leave of the cluster
	// apiPorts are the TCP ports of the API (closed to containers).
	apiPorts []int
	// pools are the parsed DefaultAddressPools.
	pools []ipam.Pool
}

// ClusterConfig holds the cluster-mode flags.
type ClusterConfig struct {
	Store     string // etcd://H1:2379,H2:2379
	StoreCA   string
	StoreCert string
	StoreKey  string
	// StoreInsecure allows an external store on a non-loopback address
	// without TLS (--cluster-store-insecure).
	StoreInsecure  bool
	Prefix         string
	Init           bool
	Join           string
	JoinToken      string
	JoinTokenFile  string
	JoinPort       int
	CertExpiry     time.Duration
	Voters         int
	VoterGrace     time.Duration
	IPAMGCInterval time.Duration
	IPAMGrace      time.Duration
	AdvertiseAddr  string
	ClientPort     int
	HTTPPort       int
	PeerPort       int
	NodeTTL        time.Duration
	VXLANPort      int
	ResyncInterval time.Duration
}

// NewCommand returns the `vxnet daemon` command.
func NewCommand() *cobra.Command {
	var cfg Config
	cmd := &cobra.Command{
		Use:           "daemon [OPTIONS]",
		Short:         "Run the vxnet engine (as root)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.dockerPluginDirSet = cmd.Flags().Changed("docker-plugin-dir")
			cfg.API.TLSSet = cmd.Flags().Changed("tls")
			cfg.API.GroupSet = cmd.Flags().Changed("group")
			for _, n := range []string{"tls", "tlsverify", "tlscacert", "tlscert", "tlskey"} {
				if cmd.Flags().Changed(n) {
					cfg.API.TLSFlags = append(cfg.API.TLSFlags, n)
				}
			}
			if !cfg.API.TLSVerify && !cfg.API.TLS && !cfg.API.TLSSet {
				for _, n := range []string{"tlscacert", "tlscert", "tlskey"} {
					if cmd.Flags().Changed(n) {
						return fmt.Errorf("--%s needs --tlsverify (or --tls)", n)
					}
				}
			}
			if cfg.Cluster.Store != "" && cmd.Flags().Changed("cluster-join-port") {
				return errors.New("--cluster-join-port belongs to an embedded cluster (--cluster-init, --cluster-join), not to --cluster-store")
			}
			if cfg.Cluster.Store != "" && cmd.Flags().Changed("cluster-http-port") {
				return errors.New("--cluster-http-port belongs to an embedded cluster (--cluster-init, --cluster-join), not to --cluster-store")
			}
			if cmd.Flags().Changed("cert-expiry") {
				if !cfg.Cluster.Init {
					return errors.New("--cert-expiry is the cluster's setting: give it with --cluster-init")
				}
			} else {
				cfg.Cluster.CertExpiry = 0 // keep the cluster's setting
			}
			return Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	a := &cfg.API
	f.StringArrayVarP(&a.Hosts, "host", "H", nil, "Daemon socket(s) to listen on: unix:///path or tcp://ADDR[:PORT] (default "+DefaultSocket+")")
	f.BoolVar(&a.TLS, "tls", false, "Use TLS on tcp:// sockets; implied by --tlsverify (--tls=false allows plain TCP)")
	f.BoolVar(&a.TLSVerify, "tlsverify", os.Getenv("DOCKER_TLS_VERIFY") != "", "Use TLS and require client certificates signed by --tlscacert")
	f.StringVar(&a.TLSCACert, "tlscacert", "", "Trust client certificates signed only by this CA (default $DOCKER_CERT_PATH/ca.pem or ~/.docker/ca.pem)")
	f.StringVar(&a.TLSCert, "tlscert", "", "Path to the TLS certificate file (default $DOCKER_CERT_PATH/cert.pem or ~/.docker/cert.pem)")
	f.StringVar(&a.TLSKey, "tlskey", "", "Path to the TLS key file (default $DOCKER_CERT_PATH/key.pem or ~/.docker/key.pem)")
	f.StringVarP(&a.Group, "group", "G", "docker", "Group for the unix socket(s) (mode 0660)")
	f.StringVar(&cfg.DataRoot, "data-root", "/var/lib/vxnet", "Root of persistent state (store, images)")
	f.StringVar(&cfg.ExecRoot, "exec-root", "/run/vxnet", "Root of runtime state (netns mounts, runc state)")
	f.StringVar(&cfg.BIP, "bip", "172.17.0.1/16", "Default bridge gateway address with prefix length")
	f.StringArrayVar(&cfg.DefaultAddressPools, "default-address-pool", nil, "Default address pools for local networks (base=PREFIX,size=BITS; IPv4 or IPv6)")
	f.StringVar(&cfg.LogLevel, "log-level", "info", `Log level ("debug"|"info"|"warn"|"error")`)
	f.StringVar(&cfg.FirewallTable, "firewall-table", "vxnet", "Name of the nftables table the daemon owns")
	f.StringVar(&cfg.DockerPluginDir, "docker-plugin-dir", DefaultDockerPluginDir,
		`Serve the Docker network/IPAM/authorization plugin as vxnet.sock here (default: only if the directory exists; "" for never)`)
	f.StringSliceVar(&cfg.DNS, "dns", nil, "DNS server to use (default: the host's resolvers)")
	f.StringVar(&cfg.Runtime, "runtime", "containerd", `Container runtime: "containerd", or "runc" (vxnet's own shim, for data roots made before containerd)`)
	f.StringVar(&cfg.Containerd, "containerd", "", "Socket of a running containerd (default: run one under the data and exec roots)")
	f.StringVar(&cfg.ContainerdNamespace, "containerd-namespace", "vxnet", "containerd namespace of this daemon (one per daemon sharing a containerd)")
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "Registry (HOST[:PORT] or CIDR) that may be used over plain HTTP (repeatable)")
	c := &cfg.Cluster
	f.StringVar(&c.Store, "cluster-store", "", "External etcd cluster, etcd://HOST:PORT[,HOST:PORT...]")
	f.StringVar(&c.StoreCA, "cluster-store-ca", "", "CA file for the cluster store's TLS")
	f.StringVar(&c.StoreCert, "cluster-store-cert", "", "Client certificate for the cluster store's TLS")
	f.StringVar(&c.StoreKey, "cluster-store-key", "", "Client key for the cluster store's TLS")
	f.BoolVar(&c.StoreInsecure, "cluster-store-insecure", false, "Allow --cluster-store on a non-loopback address without TLS (not recommended)")
	f.StringVar(&c.Prefix, "cluster-prefix", "/vxnet/v1", "Key prefix in the cluster store")
	f.BoolVar(&c.Init, "cluster-init", false, "Start a new embedded etcd cluster on this host")
	f.StringVar(&c.Join, "cluster-join", "", "Join the embedded etcd cluster through a voting member's join service, ADDR[:PORT] (port 2377)")
	f.StringVar(&c.JoinToken, "join-token", "", "Token to join the cluster with (vxnet node token prints it)")
	f.StringVar(&c.JoinTokenFile, "join-token-file", "", "File holding the join token (keeps it out of ps)")
	f.IntVar(&c.JoinPort, "cluster-join-port", 2377, "Port of this host's join service (voting members)")
	f.DurationVar(&c.CertExpiry, "cert-expiry", 90*24*time.Hour, "With --cluster-init: lifetime of the cluster's member certificates")
	f.IntVar(&c.Voters, "cluster-voters", 3, "Number of voting etcd members (odd)")
	f.DurationVar(&c.VoterGrace, "cluster-voter-grace", 30*time.Second, "How long a voting etcd member may be down before a learner replaces it")
	f.DurationVar(&c.IPAMGCInterval, "cluster-ipam-gc-interval", 30*time.Second, "Period of the global address garbage collector")
	f.DurationVar(&c.IPAMGrace, "cluster-ipam-grace", time.Minute, "How long a down host's global addresses are kept before the garbage collector frees them")
	f.StringVar(&c.AdvertiseAddr, "advertise-addr", "", "Underlay address (IP or interface) of this host")
	f.IntVar(&c.ClientPort, "cluster-client-port", 2379, "Embedded etcd client port")
	f.IntVar(&c.HTTPPort, "cluster-http-port", 0, "Loopback port of the embedded etcd's /health, /version and /metrics (TLS, client certificate); 0: any free port")
	f.IntVar(&c.PeerPort, "cluster-peer-port", 2380, "Embedded etcd peer port")
	f.DurationVar(&c.NodeTTL, "node-ttl", 10*time.Second, "TTL of this node's liveness lease")
	f.IntVar(&c.VXLANPort, "vxlan-port", 4789, "UDP port of VXLAN")
	f.DurationVar(&c.ResyncInterval, "resync-interval", 30*time.Second, "Period of the overlay data plane resync")
	return cmd
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid --log-level %q: use debug, info, warn or error", s)
	}
	return l, nil
}

// Run runs the daemon until ctx ends or a signal arrives.
func Run(ctx context.Context, cfg Config) error {
	if ctx == nil {
		ctx = context.Background()
	}
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	for _, r := range cfg.InsecureRegistries {
		if err := runtime.CheckInsecureRegistry(r); err != nil {
			return err
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	apiPlan, err := planAPI(cfg.API)
	if err != nil {
		return err
	}
	cfg.apiPorts = apiPlan.tcpPorts
	bip, err := netip.ParsePrefix(cfg.BIP)
	if err != nil || !bip.Addr().Is4() || bip.Bits() > 30 {
		return fmt.Errorf("invalid --bip %q: want an IPv4 address with prefix length, e.g. 172.17.0.1/16", cfg.BIP)
	}
	var pools []ipam.Pool
	for _, v := range cfg.DefaultAddressPools {
		p, err := ipam.ParsePool(v)
		if err != nil {
			return err
		}
		pools = append(pools, p)
	}
	cfg.pools = pools
	if err := checkStoreTLS(cfg.Cluster); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("vxnet daemon needs to run as root")
	}
	for _, d := range []string{cfg.DataRoot, cfg.ExecRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	st, err := store.Open(filepath.Join(cfg.DataRoot, "vxnet.db"))
	if err != nil {
		return err
	}
	defer st.Close()

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, leave := context.WithCancel(ctx)
	defer leave()
	cfg.onLeave = leave

	w, err := wire(ctx, cfg, bip, st, log)
	if err != nil {
		return err
	}
	defer w.close()
	eng := w.engine
	if err := eng.Start(ctx); err != nil {
		return fmt.Errorf("start engine: %w", err)
	}
	defer eng.Close()
	for _, f := range w.afterStart {
		f(eng)
	}

	stopPlugin, err := serveDockerPlugin(ctx, cfg, eng, log)
	if err != nil {
		return err
	}
	defer stopPlugin()

	lns, err := apiPlan.listen(log)
	if err != nil {
		return err
	}
	var handler http.Handler = api.NewServer(eng, api.Options{Logger: log, Version: engine.Version})
	if level <= slog.LevelDebug {
		handler = withProfiler(handler)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, len(lns))
	var addrs []string
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
		addrs = append(addrs, ln.Addr().String())
	}
	log.Info("vxnet daemon listening", "api", strings.Join(addrs, ","), "data-root", cfg.DataRoot, "exec-root", cfg.ExecRoot)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	log.Info("shutting down; containers keep running")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	for _, sock := range apiPlan.unixSockets() {
		os.Remove(sock)
	}
	return nil
}

// withProfiler serves Go's profiler under /debug/pprof/ next to the API,
// as dockerd does in debug mode (--log-level debug here): the API socket
// is root's, and the profiles are how a start's CPU is measured.
func withProfiler(api http.Handler) http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			m.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}
