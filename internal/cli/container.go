package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// Exit codes of run, as docker's: 125 when the container could not be run.
const exitRunFailed = 125

func runFailed(err error) error {
	if client.IsErrConnectionFailed(err) {
		return err
	}
	return &StatusError{Status: err.Error(), Code: exitRunFailed}
}

func newRun(e *env) *cobra.Command {
	var (
		detach, autoRemove, publishAll bool
		name, net, ip, ip6, host       string
		aliases, envs, publish, expose []string
		dnsServers, dnsSearch          []string
		dnsOpts, links, addHosts       []string
	)
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			envList, err := parseEnv(envs)
			if err != nil {
				return &StatusError{Status: err.Error(), Code: exitRunFailed}
			}
			es := &network.EndpointSettings{Aliases: aliases}
			if ip != "" {
				a, err := parseIPv4("--ip", ip)
				if err != nil {
					return &StatusError{Status: err.Error(), Code: exitRunFailed}
				}
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
			}
			if ip6 != "" {
				a, err := parseIPv6("--ip6", ip6)
				if err != nil {
					return &StatusError{Status: err.Error(), Code: exitRunFailed}
				}
				if es.IPAMConfig == nil {
					es.IPAMConfig = &network.EndpointIPAMConfig{}
				}
				es.IPAMConfig.IPv6Address = a
			}
			exposed, bindings, err := parsePorts(publish, expose)
			if err != nil {
				return &StatusError{Status: err.Error(), Code: exitRunFailed}
			}
			var servers []netip.Addr
			for _, v := range dnsServers {
				a, err := netip.ParseAddr(v)
				if err != nil {
					return &StatusError{Status: fmt.Sprintf("invalid argument %q for \"--dns\" flag: %s is not an ip address", v, v), Code: exitRunFailed}
				}
				servers = append(servers, a)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			opts := client.ContainerCreateOptions{
				Name: name,
				Config: &container.Config{
					Image:        args[0],
					Cmd:          args[1:],
					Env:          envList,
					Hostname:     host,
					ExposedPorts: exposed,
				},
				// An attached run removes the container itself once it has
				// all output and the exit code; the daemon's AutoRemove
				// could remove it before the output is fetched.
				HostConfig: &container.HostConfig{AutoRemove: autoRemove && detach, NetworkMode: container.NetworkMode(net),
					PortBindings: bindings, PublishAllPorts: publishAll,
					DNS: servers, DNSSearch: dnsSearch, DNSOptions: dnsOpts, Links: links, ExtraHosts: addHosts},
			}
			if net != "" || ip != "" || len(aliases) > 0 {
				key := net
				if key == "" {
					key = network.NetworkDefault
				}
				opts.NetworkingConfig = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{key: es}}
			}
			created, err := c.ContainerCreate(ctx, opts)
			if err != nil {
				return runFailed(err)
			}
			id := created.ID
			for _, w := range created.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING:", w)
			}
			if detach {
				if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
					return runFailed(err)
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			}
			return runAttached(ctx, cmd, c, id, autoRemove)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	// -h is --hostname, as in docker, so help has no shorthand here.
	f.Bool("help", false, "Print usage")
	f.BoolVarP(&detach, "detach", "d", false, "Run container in background and print container ID")
	f.BoolVar(&autoRemove, "rm", false, "Automatically remove the container when it exits")
	f.StringVar(&name, "name", "", "Assign a name to the container")
	f.StringVar(&net, "network", "", "Connect a container to a network")
	f.StringVar(&net, "net", "", "Connect a container to a network")
	_ = f.MarkHidden("net")
	f.StringVar(&ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	f.StringVar(&ip6, "ip6", "", "IPv6 address (e.g., 2001:db8::33)")
	f.StringArrayVar(&aliases, "network-alias", nil, "Add network-scoped alias for the container")
	f.StringVarP(&host, "hostname", "h", "", "Container host name")
	f.StringArrayVar(&dnsServers, "dns", nil, "Set custom DNS servers")
	f.StringArrayVar(&dnsSearch, "dns-search", nil, "Set custom DNS search domains")
	f.StringArrayVar(&dnsOpts, "dns-option", nil, "Set DNS options")
	f.StringArrayVar(&dnsOpts, "dns-opt", nil, "Set DNS options")
	_ = f.MarkHidden("dns-opt")
	f.StringArrayVar(&links, "link", nil, "Add link to another container")
	f.StringArrayVar(&addHosts, "add-host", nil, "Add a custom host-to-IP mapping (host:ip)")
	f.StringArrayVarP(&envs, "env", "e", nil, "Set environment variables")
	f.StringArrayVarP(&publish, "publish", "p", nil, "Publish a container's port(s) to the host")
	f.BoolVarP(&publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	f.StringArrayVar(&expose, "expose", nil, "Expose a port or a range of ports")
	return cmd
}

// runAttached waits for the container as docker run does: the wait is
// registered before the start, then the output is followed until the
// container exits; with --rm the container is removed after that.
func runAttached(ctx context.Context, cmd *cobra.Command, c *client.Client, id string, autoRemove bool) error {
	if autoRemove {
		defer func() {
			_, _ = c.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true})
		}()
	}
	waitCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	wait := c.ContainerWait(waitCtx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	select {
	case err := <-wait.Error:
		return runFailed(err)
	default:
	}
	if _, err := c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return runFailed(err)
	}
	logs, err := c.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: true})
	switch {
	case err == nil:
		_, _ = stdcopy.StdCopy(cmd.OutOrStdout(), cmd.ErrOrStderr(), logs)
		logs.Close()
	case cerrdefs.IsNotFound(err):
		// Removed by someone else before we could follow it.
	default:
		fmt.Fprintln(cmd.ErrOrStderr(), oneLine(err.Error()))
	}
	select {
	case res := <-wait.Result:
		if res.Error != nil && res.Error.Message != "" {
			return &StatusError{Status: res.Error.Message, Code: exitRunFailed}
		}
		if res.StatusCode != 0 {
			return &StatusError{Code: int(res.StatusCode)}
		}
		return nil
	case err := <-wait.Error:
		return runFailed(err)
	}
}

func newExec(e *env) *cobra.Command {
	var (
		detach bool
		envs   []string
	)
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			envList, err := parseEnv(envs)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			created, err := c.ExecCreate(ctx, args[0], client.ExecCreateOptions{
				Cmd: args[1:], Env: envList, AttachStdout: !detach, AttachStderr: !detach,
			})
			if err != nil {
				return err
			}
			if detach {
				_, err := c.ExecStart(ctx, created.ID, client.ExecStartOptions{Detach: true})
				return err
			}
			att, err := c.ExecAttach(ctx, created.ID, client.ExecAttachOptions{})
			if err != nil {
				return err
			}
			_, copyErr := stdcopy.StdCopy(cmd.OutOrStdout(), cmd.ErrOrStderr(), att.Reader)
			att.Close()
			if copyErr != nil && copyErr != io.EOF {
				return copyErr
			}
			res, err := c.ExecInspect(ctx, created.ID, client.ExecInspectOptions{})
			if err != nil {
				return err
			}
			if res.ExitCode != 0 {
				return &StatusError{Code: res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&detach, "detach", "d", false, "Detached mode: run command in the background")
	f.StringArrayVarP(&envs, "env", "e", nil, "Set environment variables")
	return cmd
}

func newPs(e *env) *cobra.Command {
	var all, quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ps [OPTIONS]",
		Aliases: []string{"ls"},
		Short:   "List containers",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.ContainerList(cmd.Context(), client.ContainerListOptions{All: all})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			id := func(s string) string {
				if noTrunc {
					return s
				}
				return shortID(s)
			}
			if quiet {
				for _, ct := range res.Items {
					fmt.Fprintln(out, id(ct.ID))
				}
				return nil
			}
			t := newTable(out)
			fmt.Fprintln(t, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
			for _, ct := range res.Items {
				command := ct.Command
				if !noTrunc {
					command = ellipsis(command, 20)
				}
				names := make([]string, 0, len(ct.Names))
				for _, n := range ct.Names {
					names = append(names, strings.TrimPrefix(n, "/"))
				}
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id(ct.ID), ct.Image, strconv.Quote(command),
					since(ct.Created), ct.Status, portsColumn(ct.Ports), strings.Join(names, ","))
			}
			return t.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display container IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	return cmd
}

func newRm(e *env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more containers",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return eachRef(cmd, args, func(ref string) error {
				_, err := c.ContainerRemove(cmd.Context(), ref, client.ContainerRemoveOptions{Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container")
	return cmd
}

func newStart(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "start CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return eachRef(cmd, args, func(ref string) error {
				_, err := c.ContainerStart(cmd.Context(), ref, client.ContainerStartOptions{})
				return err
			})
		},
	}
}

func newStop(e *env) *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			opts := client.ContainerStopOptions{}
			if cmd.Flags().Changed("timeout") {
				opts.Timeout = &timeout
			}
			return eachRef(cmd, args, func(ref string) error {
				_, err := c.ContainerStop(cmd.Context(), ref, opts)
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 10, "Seconds to wait before killing the container")
	return cmd
}

func newRename(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			_, err = c.ContainerRename(cmd.Context(), args[0], client.ContainerRenameOptions{NewName: args[1]})
			return err
		},
	}
}

func newLogs(e *env) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			rc, err := c.ContainerLogs(cmd.Context(), args[0], client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow})
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = stdcopy.StdCopy(cmd.OutOrStdout(), cmd.ErrOrStderr(), rc)
			return err
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "Follow log output")
	return cmd
}

// newInspect inspects containers, else networks, as docker inspect does.
func newInspect(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME|ID [NAME|ID...]",
		Short: "Return low-level information on containers or networks",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var raws []json.RawMessage
			var errs []string
			for _, ref := range args {
				cr, err := c.ContainerInspect(ctx, ref, client.ContainerInspectOptions{})
				if err == nil {
					raws = append(raws, cr.Raw)
					continue
				}
				if !cerrdefs.IsNotFound(err) {
					return err
				}
				nr, err := c.NetworkInspect(ctx, ref, client.NetworkInspectOptions{})
				if err == nil {
					raws = append(raws, nr.Raw)
					continue
				}
				if !cerrdefs.IsNotFound(err) {
					return err
				}
				errs = append(errs, "Error: No such object: "+ref)
			}
			if err := writeJSONArray(cmd.OutOrStdout(), raws); err != nil {
				return err
			}
			if len(errs) > 0 {
				return &StatusError{Status: strings.Join(errs, "\n"), Code: 1}
			}
			return nil
		},
	}
}
