package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newEvents is `vxnet events`: the daemon's events, docker events' way
// (kept ones with --since, new ones until --until or interrupted).
func newEvents(e *env) *cobra.Command {
	var since, until string
	var filterFlags []string
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			f, err := parseFilterFlags(filterFlags)
			if err != nil {
				return err
			}
			res := c.Events(cmd.Context(), client.EventsListOptions{Since: since, Until: until, Filters: f})
			out := cmd.OutOrStdout()
			for {
				select {
				case m := <-res.Messages:
					attrs := make([]string, 0, len(m.Actor.Attributes))
					for k, v := range m.Actor.Attributes {
						attrs = append(attrs, k+"="+v)
					}
					sort.Strings(attrs)
					fmt.Fprintf(out, "%s %s %s %s (%s)\n", time.Unix(0, m.TimeNano).Format("2006-01-02T15:04:05.000000000Z07:00"),
						m.Type, m.Action, m.Actor.ID, strings.Join(attrs, ", "))
				case err := <-res.Err:
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "Show all events created since timestamp")
	cmd.Flags().StringVar(&until, "until", "", "Stream events until this timestamp")
	cmd.Flags().StringArrayVarP(&filterFlags, "filter", "f", nil, "Filter output based on conditions provided")
	return cmd
}
