// Package cli is the vxnet command line: a Docker-compatible client of the
// vxnet daemon's Docker Engine API. Commands, flags and output formats follow
// docker's so that habits carry over (network create/ls/inspect/rm/prune/
// connect/disconnect, run, exec, ps, rm, inspect, logs, start, stop, image ls,
// image import, version).
//
// NewRootCommand returns the cobra root, to which the binary adds its daemon
// commands; Execute runs a root with given streams and returns the exit code;
// Main runs the standard root, for tests and simple mains.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// DefaultHost is the daemon address when neither -H nor VXNET_HOST is set.
const DefaultHost = "unix:///run/vxnet/vxnet.sock"

// EnvHost names the environment variable that overrides DefaultHost.
const EnvHost = "VXNET_HOST"

// StatusError ends the command with an exit code, printing Status (if any)
// on stderr. run and exec use it to pass on the container's exit code.
type StatusError struct {
	Status string
	Code   int
}

func (e *StatusError) Error() string {
	if e.Status != "" {
		return e.Status
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// usageError is a command line mistake: printed with a pointer to --help.
type usageError struct {
	cmd *cobra.Command
	err error
}

func (e *usageError) Error() string { return e.err.Error() }

// env is the state the commands share: the daemon address and the client
// made from it on first use.
type env struct {
	host string
	c    *client.Client
}

func (e *env) client() (*client.Client, error) {
	if e.c != nil {
		return e.c, nil
	}
	c, err := client.New(client.WithHost(e.host), client.WithAPIVersionNegotiation(), client.WithUserAgent("vxnet-cli"))
	if err != nil {
		return nil, fmt.Errorf("invalid daemon address %q: %w", e.host, err)
	}
	e.c = c
	return c, nil
}

func (e *env) close() {
	if e.c != nil {
		_ = e.c.Close()
	}
}

// NewRootCommand returns the vxnet root command with all client commands.
// Callers may add more commands (the daemon) before running it with Execute.
func NewRootCommand() *cobra.Command {
	e := &env{}
	root := &cobra.Command{
		Use:           "vxnet [OPTIONS] COMMAND",
		Short:         "A multi-host container network engine",
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		PersistentPostRun: func(*cobra.Command, []string) { e.close() },
	}
	host := os.Getenv(EnvHost)
	if host == "" {
		host = DefaultHost
	}
	root.PersistentFlags().StringVarP(&e.host, "host", "H", host, "Daemon socket to connect to (env "+EnvHost+")")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &usageError{cmd: c, err: err}
	})
	root.CompletionOptions.DisableDefaultCmd = true

	network := &cobra.Command{Use: "network", Short: "Manage networks", Args: groupArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	network.AddCommand(
		newNetworkCreate(e), newNetworkList(e), newNetworkInspect(e), newNetworkRemove(e),
		newNetworkPrune(e), newNetworkConnect(e), newNetworkDisconnect(e),
	)
	image := &cobra.Command{Use: "image", Short: "Manage images", Args: groupArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	image.AddCommand(newImageList(e), newImageImport(e))

	root.AddCommand(network, image,
		newRun(e), newPort(e), newExec(e), newPs(e), newRm(e), newInspect(e), newLogs(e),
		newStart(e), newStop(e), newRename(e), newVersion(e), newNode(e), newEvents(e),
	)
	return root
}

// Main runs the standard vxnet commands with args (without the program
// name) and returns the exit code. Standard input is os.Stdin.
func Main(args []string, stdout, stderr io.Writer) int {
	return Execute(context.Background(), NewRootCommand(), args, os.Stdin, stdout, stderr)
}

// Execute runs root with args and the given streams and returns the exit
// code: 0 on success, the code of a StatusError, 1 for other errors and for
// usage mistakes (125 for usage mistakes of run, as docker). Errors are
// printed on stderr on one line, docker style.
func Execute(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var se *StatusError
	if errors.As(err, &se) {
		if se.Status != "" {
			fmt.Fprintln(stderr, strings.TrimSpace(se.Status))
		}
		if se.Code == 0 {
			return 1
		}
		return se.Code
	}
	var ue *usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		c := cmd
		if ue != nil && ue.cmd != nil {
			c = ue.cmd
		}
		fmt.Fprintln(stderr, oneLine(err.Error()))
		fmt.Fprintf(stderr, "See '%s --help'.\n", c.CommandPath())
		if c.Name() == "run" {
			return 125
		}
		return 1
	}
	fmt.Fprintln(stderr, oneLine(describe(err, root)))
	return 1
}

// describe rewrites connection failures to name vxnet's daemon.
func describe(err error, root *cobra.Command) string {
	if client.IsErrConnectionFailed(err) {
		host, _ := root.PersistentFlags().GetString("host")
		return fmt.Sprintf("Cannot connect to the vxnet daemon at %s. Is the vxnet daemon running?", host)
	}
	return err.Error()
}

func oneLine(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\n", " "))
}

// Argument checks that report usage errors in docker's words.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{cmd: cmd, err: fmt.Errorf("%q accepts no arguments", cmd.CommandPath())}
	}
	return nil
}

func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{cmd: cmd, err: fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
	}
	return nil
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q requires exactly %d %s", cmd.CommandPath(), n, plural(n, "argument"))}
		}
		return nil
	}
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return &usageError{cmd: cmd, err: fmt.Errorf("%q requires at least %d %s", cmd.CommandPath(), n, plural(n, "argument"))}
		}
		return nil
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
