package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/vxnet/vxnet/internal/api"
)

func newImageList(e *env) *cobra.Command {
	var quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List images",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			res, err := c.ImageList(cmd.Context(), client.ImageListOptions{})
			if err != nil {
				return err
			}
			imgs := res.Items
			sort.SliceStable(imgs, func(i, j int) bool { return imgs[i].Created > imgs[j].Created })
			id := func(s string) string {
				if noTrunc {
					return s
				}
				return shortID(s)
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, img := range imgs {
					fmt.Fprintln(out, id(img.ID))
				}
				return nil
			}
			t := newTable(out)
			fmt.Fprintln(t, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			for _, img := range imgs {
				tags := img.RepoTags
				if len(tags) == 0 {
					tags = []string{"<none>:<none>"}
				}
				for _, rt := range tags {
					repo, tag := splitTag(rt)
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", repo, tag, id(img.ID), since(img.Created), humanSize(img.Size))
				}
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	return cmd
}

// splitTag splits repo:tag at the last colon after the last slash.
func splitTag(ref string) (string, string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, "<none>"
	}
	return ref[:i], ref[i+1:]
}

func newImageImport(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "import NAME FILE|-",
		Short: "Import a root filesystem tarball as an image",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, file := args[0], args[1]
			var src io.Reader
			if file == "-" {
				src = cmd.InOrStdin()
			} else {
				f, err := os.Open(file)
				if err != nil {
					return fmt.Errorf("open %s: %w", file, err)
				}
				defer f.Close()
				src = f
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			rc, err := c.ImageImport(cmd.Context(), client.ImageImportSource{Source: src, SourceName: "-"}, name, client.ImageImportOptions{})
			if err != nil {
				return err
			}
			defer rc.Close()
			id, err := lastStatus(rc)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), id)
			return nil
		},
	}
}

// lastStatus reads a JSON progress stream and returns its last status, or
// the error the stream reports.
func lastStatus(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	last := ""
	for {
		var m struct {
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read import progress: %w", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return "", errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return "", errors.New(m.Error)
		}
		if m.Status != "" {
			last = m.Status
		}
	}
	if last == "" {
		return "", errors.New("import finished without an image ID")
	}
	return last, nil
}

func clientVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newVersion(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the vxnet version information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client:\n Version:           %s\n API version:       %s\n Go version:        %s\n OS/Arch:           %s/%s\n",
				clientVersion(), api.APIVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			c, err := e.client()
			if err != nil {
				return err
			}
			v, err := c.ServerVersion(cmd.Context(), client.ServerVersionOptions{})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nServer: %s\n Engine:\n  Version:          %s\n  API version:      %s (minimum version %s)\n  OS/Arch:          %s/%s\n",
				v.Platform.Name, v.Version, v.APIVersion, v.MinAPIVersion, v.Os, v.Arch)
			for _, comp := range v.Components {
				if gv := comp.Details["GoVersion"]; comp.Name == "Engine" && gv != "" {
					fmt.Fprintf(out, "  Go version:       %s\n", gv)
				}
			}
			return nil
		},
	}
}
