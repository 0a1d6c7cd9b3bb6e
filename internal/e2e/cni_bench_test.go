package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchCNI: CNI ADD and DEL latency through libcni, side by side in
// one run, interleaved per namespace on one host of a two-host cluster:
// the vxnet plugin on a bridge network, the vxnet plugin on an overlay
// network, and the reference bridge + host-local plugins
// (containernetworking/plugins v1.10.0). Each plugin runs in the host's
// namespace through the same nsenter wrapper.
func TestBenchCNI(t *testing.T) {
	bnGate(t)
	n := bnEnv(t, "VXNET_BENCH_CNI_N", 100)
	c := ovCluster(t, 2)
	a := c.Host(0)
	cli(t, a, "network", "create", "--subnet", "10.84.0.0/16", "cbr")
	cli(t, a, "network", "create", "-d", "overlay", "--subnet", "10.85.0.0/16", "cov")
	bin := cniBuild(t, "bridge", "host-local")
	series := []struct {
		name string
		ch   *cniHost
		add  []time.Duration
		del  []time.Duration
	}{
		{name: "vxnet plugin, bridge network", ch: newCNIHost(t, c, a, bin, cniConf("cbr", a.Socket))},
		{name: "vxnet plugin, overlay network", ch: newCNIHost(t, c, a, bin, cniConf("cov", a.Socket))},
		{name: "reference bridge + host-local", ch: newCNIHost(t, c, a, bin, fmt.Sprintf(`{"cniVersion":"1.1.0","name":"ref","plugins":[
			{"type":"bridge","bridge":"cnibr0","isGateway":true,"ipam":{"type":"host-local","subnet":"10.86.0.0/16","dataDir":%q}}]}`,
			filepath.Join(c.Dir, "host-local")))},
	}
	ns := make([][]string, len(series))
	for s := range series {
		for i := 0; i < n; i++ {
			ns[s] = append(ns[s], cniNetns(t, c, fmt.Sprintf("b%d-%03d", s, i)))
		}
	}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		for s := range series {
			start := time.Now()
			if _, err := series[s].ch.conf.AddNetworkList(ctx, series[s].ch.list, series[s].ch.rt(fmt.Sprintf("b%d-%d", s, i), ns[s][i])); err != nil {
				t.Fatalf("%s: ADD %d: %v", series[s].name, i, err)
			}
			series[s].add = append(series[s].add, time.Since(start))
		}
	}
	for i := 0; i < n; i++ {
		for s := range series {
			start := time.Now()
			if err := series[s].ch.conf.DelNetworkList(ctx, series[s].ch.list, series[s].ch.rt(fmt.Sprintf("b%d-%d", s, i), ns[s][i])); err != nil {
				t.Fatalf("%s: DEL %d: %v", series[s].name, i, err)
			}
			series[s].del = append(series[s].del, time.Since(start))
		}
	}
	var rows [][]string
	for _, s := range series {
		rows = append(rows, bnLatencyRow("ADD, "+s.name, s.add))
	}
	for _, s := range series {
		rows = append(rows, bnLatencyRow("DEL, "+s.name, s.del))
	}
	bnPrint(t, fmt.Sprintf("CNI ADD/DEL latency, %d namespaces per plugin, interleaved", n), bnLatencyHeader, rows)
	ref := bnSummary(series[2].add)
	for _, s := range series[:2] {
		st := bnSummary(s.add)
		fmt.Printf("ADD p50 %s vs reference: %s; p99: %s\n", s.name, bnRatio(st.P50, ref.P50), bnRatio(st.P99, ref.P99))
	}
}
