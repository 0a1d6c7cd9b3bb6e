package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct {
		in   string
		tls  bool
		want string
		err  string
	}{
		{"unix:///run/vxnet/vxnet.sock", false, "unix:///run/vxnet/vxnet.sock", ""},
		{"/tmp/x.sock", false, "unix:///tmp/x.sock", ""},
		{"unix://", false, "", "empty socket path"},
		{"tcp://192.0.2.1", true, "tcp://192.0.2.1:2376", ""},
		{"tcp://192.0.2.1", false, "tcp://192.0.2.1:2375", ""},
		{"tcp://:2376", true, "tcp://:2376", ""},
		{"tcp://[2001:db8::1]:3000", true, "tcp://[2001:db8::1]:3000", ""},
		{"tcp://2001:db8::1", true, "", "bracket IPv6"},
		{"tcp://h:99999", true, "", "bad port"},
		{"tcp://h:1/x", true, "", "no path"},
		{"fd://", false, "", "want unix:///path or tcp://"},
	} {
		got, err := parseHost(tc.in, tc.tls)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseHost(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseHost(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// The API over TCP is TLS only unless --tls=false is explicit; TLS files
// must load.
func TestPlanAPI(t *testing.T) {
	t.Setenv("DOCKER_CERT_PATH", t.TempDir()) // no default files
	tcp := []string{"unix:///x.sock", "tcp://127.0.0.1"}
	for _, tc := range []struct {
		c    APIConfig
		want string
	}{
		{APIConfig{}, ""},
		{APIConfig{Hosts: tcp}, "needs TLS"},
		{APIConfig{Hosts: tcp, TLSSet: true}, ""},
		{APIConfig{Hosts: tcp, TLSVerify: true}, "--tlscert"},
		{APIConfig{Hosts: tcp, Group: "no-such-group-vxnet", GroupSet: true, TLSSet: true}, "--group no-such-group-vxnet"},
		{APIConfig{Group: "no-such-group-vxnet"}, ""}, // the default group may be missing
		{APIConfig{TLSVerify: true, TLSFlags: []string{"tlsverify"}}, "applies to -H tcp:// addresses only"},
		{APIConfig{TLSVerify: true}, ""}, // from $DOCKER_TLS_VERIFY, no TCP: nothing to do
	} {
		p, err := planAPI(tc.c)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("planAPI(%+v) = %v, want %q", tc.c, err, tc.want)
		}
		if err == nil && tc.c.TLSSet && len(tc.c.Hosts) > 1 && (!p.plainTCP || len(p.tcpPorts) != 1 || p.tcpPorts[0] != DefaultPlainPort) {
			t.Errorf("planAPI(%+v) = %+v, want plain TCP on %d", tc.c, p, DefaultPlainPort)
		}
	}
}

// Bad daemon flags fail before anything is made, with one clear line.
func TestRunRejectsBadFlags(t *testing.T) {
	base := Config{API: APIConfig{Hosts: []string{"unix:///nonexistent/x.sock"}}, DataRoot: t.TempDir(), ExecRoot: t.TempDir(), BIP: "172.17.0.1/16", LogLevel: "info"}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.BIP = "172.17.0.1" }, "invalid --bip"},
		{func(c *Config) { c.BIP = "fd00::1/64" }, "invalid --bip"},
		{func(c *Config) { c.LogLevel = "loud" }, "invalid --log-level"},
		{func(c *Config) { c.DefaultAddressPools = []string{"base=10.0.0.0/16"} }, "invalid --default-address-pool"},
		{func(c *Config) { c.API.Hosts = []string{"ftp://1.2.3.4:1"} }, "invalid -H"},
		{func(c *Config) { c.API.Hosts = []string{"tcp://1.2.3.4:1"} }, "needs TLS"},
		{func(c *Config) { c.Cluster.Store = "etcd://192.0.2.1:2379" }, "not a loopback address and the store would be reached without TLS"},
	} {
		cfg := base
		tc.mod(&cfg)
		err := Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Run(%+v) = %v, want one line with %q", cfg, err, tc.want)
		}
	}
}

func TestClusterFlagsExclusive(t *testing.T) {
	cc := ClusterConfig{Init: true, Join: "192.0.2.1", Voters: 3}
	err := wireCluster(context.Background(), Config{Cluster: cc}, nil, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "mutually exclusive") {
		t.Errorf("init+join: %v", err)
	}
	cc = ClusterConfig{Init: true, Voters: 2}
	err = wireCluster(context.Background(), Config{Cluster: cc}, nil, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "odd") {
		t.Errorf("even voters: %v", err)
	}
	cc = ClusterConfig{Init: true, Voters: 3, VoterGrace: time.Second, IPAMGCInterval: time.Second, IPAMGrace: -time.Second}
	err = wireCluster(context.Background(), Config{Cluster: cc}, nil, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "--cluster-ipam-grace") {
		t.Errorf("negative IPAM grace: %v", err)
	}
	cc = ClusterConfig{Init: true, Voters: 3, VoterGrace: -time.Second}
	err = wireCluster(context.Background(), Config{Cluster: cc}, nil, nil, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "--cluster-voter-grace") {
		t.Errorf("negative grace: %v", err)
	}
}

func TestCheckStoreTLS(t *testing.T) {
	for _, tc := range []struct {
		cc   ClusterConfig
		want string // "" = accepted
	}{
		{ClusterConfig{}, ""},
		{ClusterConfig{Store: "etcd://127.0.0.1:2379"}, ""},
		{ClusterConfig{Store: "etcd://localhost,[::1]:2379"}, ""},
		{ClusterConfig{Store: "etcd://127.0.0.1:2379,192.0.2.1:2379"}, "192.0.2.1 is not a loopback address"},
		{ClusterConfig{Store: "etcd://etcd.example"}, "etcd.example is not a loopback address"},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreInsecure: true}, ""},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreCA: "ca", StoreCert: "c", StoreKey: "k"}, ""},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreCA: "ca"}, ""},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreCert: "c", StoreKey: "k"}, "need --cluster-store-ca"},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreCA: "ca", StoreCert: "c"}, "go together"},
		{ClusterConfig{Store: "etcd://192.0.2.1", StoreCA: "ca", StoreInsecure: true}, "contradicts"},
		{ClusterConfig{Init: true, StoreCA: "ca"}, "belong to --cluster-store"},
		{ClusterConfig{Init: true, StoreInsecure: true}, "needs --cluster-store"},
	} {
		err := checkStoreTLS(tc.cc)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkStoreTLS(%+v) = %v, want %q", tc.cc, err, tc.want)
		}
	}
}

// A data root with containers of the runc runtime is refused (saying how to
// go on) unless --runtime runc keeps using it; an unknown runtime is named.
func TestWireRuntimeOldDataRoot(t *testing.T) {
	dataRoot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dataRoot, "containers", "0123abcd"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataRoot: dataRoot, ExecRoot: t.TempDir(), Runtime: "containerd", ContainerdNamespace: "vxnet"}
	log := slog.New(slog.DiscardHandler)
	_, err := wireRuntime(context.Background(), cfg, nil, &wired{}, log)
	if err == nil || !strings.Contains(err.Error(), "holds 1 containers of the runc runtime") || !strings.Contains(err.Error(), "--runtime runc") {
		t.Errorf("containerd on an old data root: %v", err)
	}
	cfg.Runtime = "kata"
	if _, err := wireRuntime(context.Background(), cfg, nil, &wired{}, log); err == nil || !strings.Contains(err.Error(), `invalid --runtime "kata"`) {
		t.Errorf("--runtime kata: %v", err)
	}
}
