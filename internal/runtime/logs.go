package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logRecord is one line of container.log, like Docker's json-file driver.
// Log holds the text including its trailing newline; lines longer than
// maxLogChunk are split into several records without one.
type logRecord struct {
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
	Log    string    `json:"log"`
}

const maxLogChunk = 16 * 1024

// logWriter appends records to a file; each record is one write call so a
// concurrent reader only ever sees whole lines plus a possibly partial last
// line.
type logWriter struct {
	mu sync.Mutex
	f  *os.File
}

func (w *logWriter) write(stream string, p []byte) {
	b, err := json.Marshal(logRecord{Stream: stream, Time: time.Now().UTC(), Log: string(p)})
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.f.Write(append(b, '\n'))
}

// copyStream copies r into w as records of stream until EOF.
func (w *logWriter) copyStream(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogChunk)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			w.write(stream, line)
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// Logs writes the container's output so far to stdout and stderr (either
// may be nil to drop that stream). With follow it keeps streaming until the
// container has stopped and the log is drained, or ctx ends.
func (r *Runtime) Logs(ctx context.Context, id string, stdout, stderr io.Writer, follow bool) error {
	dir, err := r.containerDir(id)
	if err != nil {
		return err
	}
	return followLog(ctx, filepath.Join(dir, logFile), stdout, stderr, follow, func() (bool, error) {
		st, err := r.State(ctx, id)
		return err == nil && st.Status == StatusStopped, err
	})
}

// LogOptions select what Logs writes, as docker logs does.
type LogOptions struct {
	Follow bool
	// Tail is how many of the last records to write (< 0: all).
	Tail int
	// Since and Until bound the records' times (zero: unbounded).
	Since, Until time.Time
	// Timestamps prefixes every record with its time (RFC 3339, ns).
	Timestamps bool
}

// LogsWith is Logs with docker logs' options.
func (r *Runtime) LogsWith(ctx context.Context, id string, stdout, stderr io.Writer, o LogOptions) error {
	dir, err := r.containerDir(id)
	if err != nil {
		return err
	}
	return readLog(ctx, filepath.Join(dir, logFile), stdout, stderr, o, func() (bool, error) {
		st, err := r.State(ctx, id)
		return err == nil && st.Status == StatusStopped, err
	})
}

// followLog writes the records of the log file at p to stdout and stderr.
// With follow it waits for the file to appear and keeps reading until
// stopped reports the container stopped (then drains once more) or ctx
// ends.
func followLog(ctx context.Context, p string, stdout, stderr io.Writer, follow bool, stopped func() (bool, error)) error {
	return readLog(ctx, p, stdout, stderr, LogOptions{Follow: follow, Tail: -1}, stopped)
}

// readLog is followLog with options.
func readLog(ctx context.Context, p string, stdout, stderr io.Writer, o LogOptions, stopped func() (bool, error)) error {
	follow := o.Follow
	write := func(rec logRecord) error {
		if !o.Since.IsZero() && rec.Time.Before(o.Since) || !o.Until.IsZero() && rec.Time.After(o.Until) {
			return nil
		}
		w := stdout
		if rec.Stream == "stderr" {
			w = stderr
		}
		if w == nil {
			return nil
		}
		line := rec.Log
		if o.Timestamps {
			line = rec.Time.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + line
		}
		_, err := io.WriteString(w, line)
		return err
	}
	// Until the end of what is written so far, records are kept (the last
	// Tail of them) instead of written.
	var ring []logRecord
	tailing := o.Tail >= 0
	flushTail := func() error {
		if !tailing {
			return nil
		}
		tailing = false
		for _, rec := range ring {
			if err := write(rec); err != nil {
				return err
			}
		}
		ring = nil
		return nil
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) && follow {
		// Not started yet: wait for the log to be created.
		for errors.Is(err, os.ErrNotExist) {
			if done, serr := stopped(); serr != nil {
				return serr
			} else if done {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			f, err = os.Open(p)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("runtime: logs: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var partial []byte
	stoppedSeen := false
	for {
		chunk, err := br.ReadBytes('\n')
		partial = append(partial, chunk...)
		if err == nil {
			var rec logRecord
			if json.Unmarshal(partial, &rec) == nil {
				if tailing {
					if o.Tail > 0 {
						ring = append(ring, rec)
						if len(ring) > o.Tail {
							ring = ring[1:]
						}
					}
				} else if werr := write(rec); werr != nil {
					return werr
				}
			}
			partial = partial[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("runtime: logs: %w", err)
		}
		if err := flushTail(); err != nil {
			return err
		}
		if !follow || stoppedSeen {
			return nil
		}
		if !o.Until.IsZero() && time.Now().After(o.Until) {
			return nil
		}
		// At the end of what was written so far: stop once the container
		// has stopped (after one more pass to drain its last lines).
		done, serr := stopped()
		if serr != nil {
			return serr
		}
		if done {
			stoppedSeen = true
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
