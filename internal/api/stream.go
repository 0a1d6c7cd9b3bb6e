package api

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"sync"
)

// Stream numbers of Docker's multiplexed (non-TTY) stream framing.
const (
	streamStdout = 1
	streamStderr = 2
)

var discard = io.Discard

// streamMux writes Docker's multiplexed stream: each chunk is framed by an
// 8-byte header {stream, 0, 0, 0, size uint32 big-endian}. Writes from the
// stdout and stderr writers may come from different goroutines; a mutex
// keeps frames whole, and flush (may be nil) runs after every frame so a
// follower sees output at once.
type streamMux struct {
	mu    sync.Mutex
	w     io.Writer
	flush func() error
	err   error
}

func newStreamMux(w io.Writer, flush func() error) *streamMux {
	return &streamMux{w: w, flush: flush}
}

// stream returns the writer for one stream (streamStdout or streamStderr).
func (m *streamMux) stream(id byte) io.Writer { return &muxWriter{m: m, id: id} }

type muxWriter struct {
	m  *streamMux
	id byte
}

// maxFrame bounds one frame; longer writes are split.
const maxFrame = 32 << 10

func (w *muxWriter) Write(p []byte) (int, error) {
	m := w.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return 0, m.err
	}
	n := 0
	for len(p) > 0 {
		chunk := p
		if len(chunk) > maxFrame {
			chunk = chunk[:maxFrame]
		}
		var hdr [8]byte
		hdr[0] = w.id
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(chunk)))
		if _, err := m.w.Write(hdr[:]); err != nil {
			m.err = err
			return n, err
		}
		k, err := m.w.Write(chunk)
		n += k
		if err != nil {
			m.err = err
			return n, err
		}
		p = p[len(chunk):]
	}
	if m.flush != nil {
		if err := m.flush(); err != nil {
			m.err = err
			return n, err
		}
	}
	return n, nil
}

// writeBody encodes v as JSON after the headers were already written.
func writeBody(w io.Writer, v any) {
	_ = json.NewEncoder(w).Encode(v)
}
