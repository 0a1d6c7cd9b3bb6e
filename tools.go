//go:build tools

// Package vxnet pins the modules the packages use while they are being
// written in parallel, so go.mod and go.sum stay stable.
package vxnet

import (
	_ "github.com/miekg/dns"
	_ "github.com/moby/moby/api/types/container"
	_ "github.com/moby/moby/api/types/network"
	_ "github.com/moby/moby/client"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "go.etcd.io/bbolt"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/embed"
	_ "golang.org/x/sync/errgroup"
	_ "sigs.k8s.io/knftables"
	_ "github.com/google/uuid"
)
