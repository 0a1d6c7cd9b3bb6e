#!/usr/bin/env bash
# Installs what vxnet and its tests need on a Debian machine (idempotent).
set -euo pipefail
pkgs=(runc busybox-static iproute2 nftables iputils-ping iputils-arping etcd-server etcd-client iperf3 util-linux kmod curl docker.io docker-registry tini)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian etcd package may start a system etcd; vxnet's tests start their own.
systemctl stop etcd >/dev/null 2>&1 || true
# docker.io (for the Docker plugin tests, which run their own dockerd in test
# namespaces) may start a system dockerd; stop it. /usr/local/bin/docker is left alone.
systemctl stop docker.service docker.socket >/dev/null 2>&1 || true
# docker-registry (for the registry tests, which run their own) may start a system one.
systemctl stop docker-registry.service >/dev/null 2>&1 || true
# br_netfilter lets the firewall see bridged traffic (ICC off); load if present.
modprobe br_netfilter >/dev/null 2>&1 || true
# The neighbour table is shared by every network namespace of the machine. The
# kernel tests make hundreds of namespaces and overlay neighbour entries; with
# the defaults (gc_thresh3 = 1024) the table overflows and sends fail with
# "No buffer space available". Raise the limits as container hosts do.
for v in 4 6; do
	sysctl -qw net.ipv$v.neigh.default.gc_thresh1=4096 net.ipv$v.neigh.default.gc_thresh2=16384 \
		net.ipv$v.neigh.default.gc_thresh3=32768 >/dev/null 2>&1 || true
done
command -v go >/dev/null || { echo "setup: Go is required (https://go.dev/dl)"; exit 1; }
# containerd 2.4.2 and its runc v2 shim, built from their Go module (Debian's
# package is 1.6; see docs/containerd.md). About 80 s, once.
if ! /usr/local/bin/containerd --version 2>/dev/null | grep -q ' 2\.4\.2' || [ ! -x /usr/local/bin/containerd-shim-runc-v2 ]; then
	echo "setup: building containerd 2.4.2"
	GOBIN=/usr/local/bin go install -tags "no_btrfs no_devmapper no_zfs" \
		github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2
fi
