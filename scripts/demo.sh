#!/usr/bin/env bash
# The walk-through, nothing else typed: two hosts (network namespaces on an
# underlay bridge), one vxnet daemon each with embedded etcd, an overlay
# network created on host 1 and seen on host 2, vm3 on host 1 and vm33 on
# host 2 pinging each other by name. No multicast, no hand-written FDB or
# ARP entries. Everything is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (sudo bash scripts/demo.sh)"; exit 1; }
bash scripts/setup.sh
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
go build -o bin/vxnet ./cmd/vxnet
BIN=$PWD/bin/vxnet
T=vxdemo$$
DIR=$(mktemp -d /tmp/$T.XXXX)

cleanup() {
	set +e
	pkill -9 -f "$DIR/h[0-9]/sock" 2>/dev/null
	for h in 1 2; do
		for id in $(runc --root $DIR/h$h/exec/runc list -q 2>/dev/null); do runc --root $DIR/h$h/exec/runc delete -f "$id"; done
	done
	pkill -9 -f "$DIR" 2>/dev/null
	for ns in $T-h1 $T-h2 $T-sw; do
		for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p; done
	done
	sleep 0.5
	grep " $DIR" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l
	for ns in $T-h1 $T-h2 $T-sw; do ip netns del $ns 2>/dev/null; done
	rm -rf "$DIR"
}
trap cleanup EXIT

say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
run() { local h=$1; shift; printf '[host%s]$ vxnet %s\n' "$h" "$*"; "$BIN" -H "unix://$DIR/h$h/sock" "$@"; }

say "Two hosts on an underlay without multicast: 192.0.2.11 and 192.0.2.12"
ip netns add $T-sw
ip -n $T-sw link add br0 type bridge
ip -n $T-sw link set br0 up
for h in 1 2; do
	ip netns add $T-h$h
	ip -n $T-h$h link set lo up
	ip -n $T-sw link add sw$h type veth peer name eth0 netns $T-h$h
	ip -n $T-sw link set sw$h master br0 up
	ip -n $T-h$h addr add 192.0.2.1$h/24 dev eth0
	ip -n $T-h$h link set eth0 up
done

start() {
	local h=$1; shift
	mkdir -p $DIR/h$h
	nsenter --net=/run/netns/$T-h$h -- "$BIN" daemon -H unix://$DIR/h$h/sock --data-root $DIR/h$h/data \
		--exec-root $DIR/h$h/exec --advertise-addr 192.0.2.1$h "$@" >$DIR/h$h/log 2>&1 &
	disown
	for _ in $(seq 150); do "$BIN" -H unix://$DIR/h$h/sock version >/dev/null 2>&1 && return; sleep 0.2; done
	echo "daemon on host$h did not start:"; tail -20 $DIR/h$h/log; exit 1
}
say "Start the daemons: host1 starts an embedded etcd cluster (with its own CA), host2 joins it with the join token"
start 1 --cluster-init
run 1 node token
"$BIN" -H unix://$DIR/h1/sock node token -q >$DIR/join-token
start 2 --cluster-join 192.0.2.11 --join-token-file $DIR/join-token
run 1 node ls

say "Create the overlay network on host1; host2 sees it with the same ID"
run 1 network create -d overlay prod
run 2 network ls

say "vm3 on host1, vm33 on host2"
run 1 run -d --net prod --name vm3 busybox sleep 1d
run 2 run -d --net prod --name vm33 busybox sleep 1d

say "Ping by name across hosts"
run 2 exec vm33 ping -c2 vm3
run 1 exec vm3 ping -c2 vm33

say "What vxnet programmed on host2 (wanted peers vs. the kernel's FDB and neighbour entries)"
run 2 network inspect -v prod | sed -n '/"VXNet"/,/^        }/p'

say "Done: no multicast, no 'bridge fdb add', no 'arp -s'."
