package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vxnet/vxnet/internal/api"
)

// newTable returns docker's table writer: columns padded by three spaces.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
}

// shortID is docker's 12-character ID, without a "sha256:" prefix.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ellipsis cuts s to n runes, ending in "…" when it was longer.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// humanSize is docker's SIZE column: decimal units, 3 significant digits.
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}

func since(unix int64) string {
	if unix <= 0 {
		return "N/A"
	}
	return api.HumanDuration(time.Since(time.Unix(unix, 0))) + " ago"
}

// writeJSONArray prints raw JSON objects as one array indented by four
// spaces, as docker's inspect commands do ("[]" when there are none).
func writeJSONArray(w io.Writer, raws []json.RawMessage) error {
	if len(raws) == 0 {
		_, err := io.WriteString(w, "[]\n")
		return err
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, r := range raws {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(bytes.TrimSpace(r))
	}
	buf.WriteByte(']')
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "    "); err != nil {
		return fmt.Errorf("format inspect output: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}
