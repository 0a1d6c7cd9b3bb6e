package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func newNetworkCreate(e *env) *cobra.Command {
	var (
		driver                           string
		subnets, gateways, ranges        []string
		aux, labels, opts                []string
		internal, attachable, ipv6, ipv4 bool
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ipam, err := ipamConfig(subnets, ranges, gateways, aux)
			if err != nil {
				return err
			}
			lbl, err := parseKV("--label", labels, true)
			if err != nil {
				return err
			}
			o, err := parseKV("--opt", opts, false)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			req := client.NetworkCreateOptions{
				Driver:     driver,
				EnableIPv6: &ipv6,
				EnableIPv4: &ipv4,
				Internal:   internal,
				Attachable: attachable,
				Labels:     lbl,
				Options:    o,
				IPAM:       &network.IPAM{Driver: "default", Config: ipam},
			}
			res, err := c.NetworkCreate(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			for _, w := range res.Warning {
				fmt.Fprintln(cmd.ErrOrStderr(), "WARNING:", w)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "bridge", "Driver to manage the Network")
	f.StringArrayVar(&subnets, "subnet", nil, "Subnet in CIDR format that represents a network segment")
	f.StringArrayVar(&gateways, "gateway", nil, "IPv4 Gateway for the master subnet")
	f.StringArrayVar(&ranges, "ip-range", nil, "Allocate container ip from a sub-range")
	f.StringArrayVar(&aux, "aux-address", nil, "Auxiliary IPv4 addresses used by Network driver (NAME=IP)")
	f.StringArrayVar(&labels, "label", nil, "Set metadata on a network (KEY=VALUE)")
	f.StringArrayVarP(&opts, "opt", "o", nil, "Set driver specific options (KEY=VALUE)")
	f.BoolVar(&internal, "internal", false, "Restrict external access to the network")
	f.BoolVar(&attachable, "attachable", false, "Enable manual container attachment")
	f.BoolVar(&ipv6, "ipv6", false, "Enable or disable IPv6 networking")
	f.BoolVar(&ipv4, "ipv4", true, "Enable or disable IPv4 networking (--ipv4=false with --ipv6: an IPv6-only network)")
	return cmd
}

// parseFilterFlags turns -f k=v values into client filters.
func parseFilterFlags(vals []string) (client.Filters, error) {
	f := client.Filters{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("bad format of filter (expected name=value): %s", v)
		}
		f.Add(strings.ToLower(strings.TrimSpace(k)), val)
	}
	return f, nil
}

func newNetworkList(e *env) *cobra.Command {
	var (
		quiet, noTrunc bool
		filterVals     []string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := parseFilterFlags(filterVals)
			if err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.NetworkList(cmd.Context(), client.NetworkListOptions{Filters: f})
			if err != nil {
				return err
			}
			nets := res.Items
			sort.SliceStable(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
			id := func(s string) string {
				if noTrunc {
					return s
				}
				return shortID(s)
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, n := range nets {
					fmt.Fprintln(out, id(n.ID))
				}
				return nil
			}
			t := newTable(out)
			fmt.Fprintln(t, "NETWORK ID\tNAME\tDRIVER\tSCOPE")
			for _, n := range nets {
				fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", id(n.ID), n.Name, n.Driver, n.Scope)
			}
			return t.Flush()
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	f.StringArrayVarP(&filterVals, "filter", "f", nil, "Provide filter values (e.g. \"driver=bridge\")")
	return cmd
}

func newNetworkInspect(e *env) *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			var raws []json.RawMessage
			var errs []string
			for _, ref := range args {
				res, err := c.NetworkInspect(cmd.Context(), ref, client.NetworkInspectOptions{Verbose: verbose})
				if err != nil {
					if !cerrdefs.IsNotFound(err) {
						return err
					}
					errs = append(errs, err.Error())
					continue
				}
				raws = append(raws, res.Raw)
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
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "Verbose output for diagnostics")
	return cmd
}

func newNetworkRemove(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return eachRef(cmd, args, func(ref string) error {
				_, err := c.NetworkRemove(cmd.Context(), ref, client.NetworkRemoveOptions{})
				return err
			})
		},
	}
}

// eachRef runs fn for every reference, printing each one that succeeded and
// each error, and fails (exit 1) if any did.
func eachRef(cmd *cobra.Command, refs []string, fn func(string) error) error {
	failed := false
	for _, ref := range refs {
		if err := fn(ref); err != nil {
			if client.IsErrConnectionFailed(err) {
				return err
			}
			fmt.Fprintln(cmd.ErrOrStderr(), oneLine(err.Error()))
			failed = true
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	if failed {
		return &StatusError{Code: 1}
	}
	return nil
}

func newNetworkPrune(e *env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all unused networks",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !force {
				ok, err := confirm(cmd, "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue?")
				if err != nil {
					return err
				}
				if !ok {
					return nil
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.NetworkPrune(cmd.Context(), client.NetworkPruneOptions{})
			if err != nil {
				return err
			}
			if len(res.Report.NetworksDeleted) > 0 {
				out := cmd.OutOrStdout()
				fmt.Fprintln(out, "Deleted Networks:")
				for _, n := range res.Report.NetworksDeleted {
					fmt.Fprintln(out, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not prompt for confirmation")
	return cmd
}

// confirm asks a y/N question on the command's input.
func confirm(cmd *cobra.Command, question string) (bool, error) {
	fmt.Fprint(cmd.OutOrStdout(), question+" [y/N] ")
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(cmd.OutOrStdout())
		return false, nil
	}
	ans := strings.ToLower(strings.TrimSpace(line))
	return ans == "y" || ans == "yes", nil
}

func newNetworkConnect(e *env) *cobra.Command {
	var (
		ip, ip6 string
		aliases []string
	)
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a container to a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			es := &network.EndpointSettings{Aliases: aliases}
			if ip != "" {
				a, err := parseIPv4("--ip", ip)
				if err != nil {
					return err
				}
				es.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
			}
			if ip6 != "" {
				a, err := parseIPv6("--ip6", ip6)
				if err != nil {
					return err
				}
				if es.IPAMConfig == nil {
					es.IPAMConfig = &network.EndpointIPAMConfig{}
				}
				es.IPAMConfig.IPv6Address = a
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			_, err = c.NetworkConnect(cmd.Context(), args[0], client.NetworkConnectOptions{Container: args[1], EndpointConfig: es})
			return err
		},
	}
	cmd.Flags().StringVar(&ip, "ip", "", "IPv4 address (e.g., \"172.30.100.104\")")
	cmd.Flags().StringVar(&ip6, "ip6", "", "IPv6 address (e.g., \"2001:db8::33\")")
	cmd.Flags().StringArrayVar(&aliases, "alias", nil, "Add network-scoped alias for the container")
	return cmd
}

func newNetworkDisconnect(e *env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "disconnect [OPTIONS] NETWORK CONTAINER",
		Short: "Disconnect a container from a network",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			_, err = c.NetworkDisconnect(cmd.Context(), args[0], client.NetworkDisconnectOptions{Container: args[1], Force: force})
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")
	return cmd
}
