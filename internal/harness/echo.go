package harness

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vxnet/vxnet/internal/netns"
)

// Recorder is a TCP echo server that records the source address of every
// connection it accepts.
type Recorder struct {
	ln net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	sources []netip.Addr
	conns   map[net.Conn]struct{}
	closed  bool
}

// StartEchoServer starts an echo server in the outside namespace on port
// (all of its addresses, IPv4); it is closed in t.Cleanup.
func (c *Cluster) StartEchoServer(port int) *Recorder {
	c.t.Helper()
	return c.outside.StartEchoServer(c.t, port)
}

// StartEchoServer starts an echo server in the namespace on port (IPv4,
// every address), closed in t.Cleanup. The listening socket is created on
// a thread inside the namespace and stays there; the server goroutines
// themselves need not run there.
func (n *NS) StartEchoServer(t testing.TB, port int) *Recorder {
	t.Helper()
	var ln net.Listener
	err := netns.Do(n.Path, func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatalf("harness: echo server in %s: %v", n.Name, err)
	}
	r := &Recorder{ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.Close)
	return r
}

func (r *Recorder) serve() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			conn.Close()
			return
		}
		if ap, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err == nil {
			r.sources = append(r.sources, ap.Addr().Unmap())
		}
		r.conns[conn] = struct{}{}
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			conn.SetDeadline(time.Now().Add(cmdTimeout))
			io.Copy(conn, conn)
			conn.Close()
			r.mu.Lock()
			delete(r.conns, conn)
			r.mu.Unlock()
		}()
	}
}

// Port returns the port the server listens on.
func (r *Recorder) Port() int {
	return r.ln.Addr().(*net.TCPAddr).Port
}

// Sources returns the source address of every connection accepted so far,
// in order.
func (r *Recorder) Sources() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]netip.Addr(nil), r.sources...)
}

// Close stops the server and its connections and waits for them. It may
// be called more than once.
func (r *Recorder) Close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}
