package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxnet/vxnet/internal/api"
)

// vxnetCall makes a request to a vxnet-only endpoint (/vxnet/...), which
// the Docker client library does not know.
func (e *env) vxnetCall(ctx context.Context, method, path string, out any) error {
	sock := strings.TrimPrefix(e.host, "unix://")
	if !strings.HasPrefix(e.host, "unix://") {
		return fmt.Errorf("invalid daemon address %q: only unix:// sockets are supported", e.host)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	req, err := http.NewRequestWithContext(ctx, method, "http://vxnet"+path, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("Cannot connect to the vxnet daemon at %s. Is the vxnet daemon running?", e.host)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var m struct{ Message string }
		if json.Unmarshal(body, &m) == nil && m.Message != "" {
			return &StatusError{Status: "Error response from daemon: " + m.Message, Code: 1}
		}
		return &StatusError{Status: fmt.Sprintf("Error response from daemon: %s", resp.Status), Code: 1}
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

func newNode(e *env) *cobra.Command {
	node := &cobra.Command{Use: "node", Short: "Manage cluster nodes", Args: groupArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() }}
	var quiet bool
	ls := &cobra.Command{
		Use: "ls [OPTIONS]", Aliases: []string{"list"}, Short: "List the hosts of the cluster", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var nodes []api.Node
			if err := e.vxnetCall(cmd.Context(), http.MethodGet, "/vxnet/nodes", &nodes); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, n := range nodes {
				if n.Stale {
					fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: cluster store unreachable; this is the daemon's last view, from %s (STALE)\n",
						n.AsOf.Local().Format(time.RFC3339))
					break
				}
			}
			if quiet {
				for _, n := range nodes {
					fmt.Fprintln(w, n.ID)
				}
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tADDRESS\tSTATE\tLAST SEEN\tETCD ROLE\tCERT EXPIRES")
			for _, n := range nodes {
				id := n.ID
				if len(id) > 12 {
					id = id[:12]
				}
				if n.Self {
					id += " *"
				}
				seen := "-"
				if !n.LastSeen.IsZero() {
					seen = api.HumanDuration(time.Since(n.LastSeen)) + " ago"
				}
				state := n.State
				if n.Stale {
					state += " (stale)"
				}
				expiry := "-"
				if !n.CertExpiry.IsZero() {
					expiry = n.CertExpiry.UTC().Format(time.RFC3339)
					if d := time.Until(n.CertExpiry); d > 0 {
						expiry += " (in " + api.HumanDuration(d) + ")"
					} else {
						expiry += " (expired)"
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id, n.Hostname, n.Addr, state, seen, n.Role, expiry)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	var force bool
	rm := &cobra.Command{
		Use: "rm [OPTIONS] NODE [NODE...]", Aliases: []string{"remove"}, Short: "Remove hosts from the cluster (their certificates are revoked)",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed bool
			for _, a := range args {
				path := "/vxnet/nodes/" + url.PathEscape(a)
				if force {
					path += "?force=1"
				}
				if err := e.vxnetCall(cmd.Context(), http.MethodDelete, path, nil); err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err.Error())
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), a)
			}
			if failed {
				return &StatusError{Code: 1}
			}
			return nil
		},
	}
	rm.Flags().BoolVarP(&force, "force", "f", false, "Force-remove a node that is up")
	var rotate, tokQuiet bool
	token := &cobra.Command{
		Use: "token [OPTIONS]", Short: "Print (or rotate) the token other hosts join the cluster with", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			method, path := http.MethodGet, "/vxnet/token"
			if rotate {
				method, path = http.MethodPost, "/vxnet/token/rotate"
			}
			var tok api.JoinToken
			if err := e.vxnetCall(cmd.Context(), method, path, &tok); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if tokQuiet {
				fmt.Fprintln(w, tok.Token)
				return nil
			}
			if rotate {
				fmt.Fprintln(w, "Successfully rotated the join token; the previous one is refused from now on.")
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "To add a host to this cluster, run on it (--join-token-file keeps the token out of ps):\n\n    vxnet daemon --cluster-join %s --join-token %s --advertise-addr <its address>\n\n", tok.JoinAddr, tok.Token)
			return nil
		},
	}
	token.Flags().BoolVar(&rotate, "rotate", false, "Rotate the join token")
	token.Flags().BoolVarP(&tokQuiet, "quiet", "q", false, "Only display the token")
	leave := &cobra.Command{
		Use: "leave", Short: "Leave the cluster cleanly (this host's daemon stops afterwards)", Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.vxnetCall(cmd.Context(), http.MethodPost, "/vxnet/leave", nil)
		},
	}
	node.AddCommand(ls, rm, token, leave)
	return node
}
