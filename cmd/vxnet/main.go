// Command vxnet is the multi-host container network engine: `vxnet daemon`
// runs the engine; every other subcommand is a client of its API.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/vxnet/vxnet/internal/cli"
	"github.com/vxnet/vxnet/internal/daemon"
	"github.com/vxnet/vxnet/internal/runtime"
)

func main() {
	// The shim is re-executed by the daemon; keep it free of cobra.
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(runtime.ShimMain(os.Args[2:]))
	}
	root := cli.NewRootCommand()
	root.AddCommand(daemon.NewCommand())
	root.AddCommand(&cobra.Command{Use: "shim", Hidden: true, DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error { return nil }})
	os.Exit(cli.Execute(context.Background(), root, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
