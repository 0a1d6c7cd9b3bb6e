package cluster

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// The simulation's store can be this module's etcd server (the one the
// daemon embeds) in a child process, so that its CPU is measured apart
// from the members': the test binary runs itself with only
// TestEmbeddedEtcdChild selected and the child's settings in the
// environment.

const simEtcdChildEnv = "VXNET_SIM_ETCD_CHILD"

// startEmbedded starts the child process serving e's ports and certificates.
func (e *etcdProcess) startEmbedded() {
	e.t.Helper()
	e.cmd = exec.Command(os.Args[0], "-test.run=^TestEmbeddedEtcdChild$", "-test.count=1")
	e.cmd.Env = append(os.Environ(), simEtcdChildEnv+"="+e.embedded,
		"VXNET_SIM_ETCD_DIR="+e.dir, "VXNET_SIM_ETCD_CLIENT="+strconv.Itoa(e.clientPort), "VXNET_SIM_ETCD_PEER="+strconv.Itoa(e.peerPort),
		"VXNET_SIM_ETCD_CERT="+e.certs.ServerCert, "VXNET_SIM_ETCD_KEY="+e.certs.ServerKey, "VXNET_SIM_ETCD_CA="+e.certs.CA)
	e.cmd.Stdout, e.cmd.Stderr = os.Stderr, os.Stderr
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start embedded etcd: %v", err)
	}
	e.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) {
		cmd.Wait()
		close(ch)
	}(e.cmd, e.exited)
}

// TestEmbeddedEtcdChild is the child process of startEmbedded; it skips
// in a normal run.
func TestEmbeddedEtcdChild(t *testing.T) {
	mode := os.Getenv(simEtcdChildEnv)
	if mode == "" {
		t.Skip("the child process of the simulation's embedded etcd")
	}
	client, _ := url.Parse("https://127.0.0.1:" + os.Getenv("VXNET_SIM_ETCD_CLIENT"))
	peer, _ := url.Parse("http://127.0.0.1:" + os.Getenv("VXNET_SIM_ETCD_PEER"))
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = "ext", os.Getenv("VXNET_SIM_ETCD_DIR")
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	switch mode {
	case "embedded":
		setClientListeners(cfg, client, httpURLFor(0))
	case "embedded-shared":
		setClientListeners(cfg, client, nil)
	default:
		t.Fatalf("%s=%q: want embedded or embedded-shared", simEtcdChildEnv, mode)
	}
	cfg.InitialCluster = "ext=" + peer.String()
	cfg.ClientTLSInfo = transport.TLSInfo{CertFile: os.Getenv("VXNET_SIM_ETCD_CERT"), KeyFile: os.Getenv("VXNET_SIM_ETCD_KEY"),
		TrustedCAFile: os.Getenv("VXNET_SIM_ETCD_CA"), ClientCertAuth: true}
	cfg.Logger, cfg.LogLevel = "zap", "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	<-e.Server.ReadyNotify()
	fmt.Fprintf(os.Stderr, "embedded etcd (%s) serving on %s\n", mode, client)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-e.Err():
		t.Fatal(err)
	case <-sig:
	}
}
