#!/usr/bin/env bash
# Runs vxnet's benchmarks (internal/e2e/bench_test.go) as root: single host
# attach latency, cluster propagation/allocation/memory, overlay convergence,
# throughput and scale. Each builds its own hosts in network namespaces and
# removes them. Results (markdown tables) are printed at the end and kept,
# with the full log, in $VXNET_BENCH_OUT (default /tmp/vxnet-bench-DATE.txt).
#
# Sizes (defaults are the issues' sizes):
#   VXNET_BENCH_CONNECT_N=200   network connect iterations (single host)
#   VXNET_BENCH_RUN_N=100       run -d iterations, API and CLI each (single host)
#   VXNET_BENCH_NETPROP_N=50    network creations timed host 1 -> host 3
#   VXNET_BENCH_ALLOC_CTRS=20   containers per host for the allocation rate
#   VXNET_BENCH_ALLOC_N=200     raw AllocateAddress calls per host
#   VXNET_BENCH_ALLOC_PAR=1     goroutines per host making them
#   VXNET_BENCH_CONV_N=50       overlay convergence iterations (max 200)
#   VXNET_BENCH_IPERF_SECS=10   iperf3 duration per path
#   VXNET_BENCH_IPERF_ROUNDS=1  iperf3 rounds (paths interleaved, mean reported)
#   VXNET_BENCH_SCALE_HOSTS=20  hosts of the scale run (3 etcd voters, the rest clients)
#   VXNET_BENCH_SCALE_CTRS=25   containers per host of the scale run
#   VXNET_BENCH_LOG=info        daemon log level (debug costs a disk write per request)
# Pick benchmarks with BENCH='TestBenchOverlay$' (a go test -run pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
	echo "bench: run as root (sudo bash scripts/bench.sh)" >&2
	exit 1
fi
bash scripts/setup.sh
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
go build -o bin/vxnet ./cmd/vxnet
export VXNET_BIN=$PWD/bin/vxnet VXNET_BENCH=1
out=${VXNET_BENCH_OUT:-/tmp/vxnet-bench-$(date -u +%Y%m%dT%H%M%SZ).txt}
{
	echo "# vxnet benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo
	echo "- nproc $(nproc), memory $(free -g | awk '/^Mem:/{print $2}') GiB, kernel $(uname -r), $(go version | awk '{print $3}')"
	echo "- runc $(runc --version | awk 'NR==1{print $3}'), system etcd $(etcd --version 2>/dev/null | awk 'NR==1{print $3}'), embedded etcd $(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3), iperf3 $(iperf3 --version | awk 'NR==1{print $2}')"
	echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
	for v in $(env | grep -o '^VXNET_BENCH_[A-Z_]*=[^ ]*' | sort); do echo "- $v"; done
} >"$out"
set +e
go test -run "${BENCH:-Bench}" -v -count=1 -timeout 60m ./internal/e2e 2>&1 | tee "$out.log"
rc=${PIPESTATUS[0]}
set -e
# The tables: markdown lines the benchmarks print at column 0.
grep -E '^(###|\||$)' "$out.log" | cat -s >>"$out"
grep -E '^(--- (PASS|FAIL|SKIP)|ok|FAIL)' "$out.log" >>"$out"
echo "- load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$out"
echo
echo "================ results ($out, full log $out.log)"
cat "$out"
exit "$rc"
