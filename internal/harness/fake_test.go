package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vxnet/vxnet/internal/netns"
)

// fakeEnv makes the test binary act as a stand-in vxnet binary, so Start,
// Kill, Restart and CLI are tested without the real daemon.
const fakeEnv = "VXNET_HARNESS_FAKE"

// fakeVxnet is the stand-in: "daemon -H unix://S --data-root D --exec-root
// E ..." serves a few paths on S; "-H unix://S PATH" is a client that GETs
// /PATH and prints the body; "shim ..." just sleeps.
func fakeVxnet(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "fake: no command")
		return 2
	}
	switch args[0] {
	case "daemon":
		return fakeDaemon(args[1:])
	case "shim":
		time.Sleep(time.Hour)
		return 0
	case "-H":
		if len(args) < 3 {
			fmt.Fprintln(os.Stderr, "fake: usage: -H unix://SOCK PATH")
			return 2
		}
		return fakeClient(strings.TrimPrefix(args[1], "unix://"), args[2])
	}
	fmt.Fprintf(os.Stderr, "fake: unknown command %q\n", args[0])
	return 2
}

func flagValue(args []string, name string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name {
			return args[i+1]
		}
	}
	return ""
}

func fakeDaemon(args []string) int {
	sock := strings.TrimPrefix(flagValue(args, "-H"), "unix://")
	execRoot := flagValue(args, "--exec-root")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "OK") })
	mux.HandleFunc("/netns", func(w http.ResponseWriter, _ *http.Request) {
		l, _ := os.Readlink("/proc/self/ns/net")
		io.WriteString(w, l)
	})
	mux.HandleFunc("/args", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, strings.Join(args, " "))
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	// /sandbox does what a real daemon leaves behind on a host: a namespace
	// pinned under the exec root with a process in it, and a shim in a
	// session of its own. It prints the two pids.
	mux.HandleFunc("/sandbox", func(w http.ResponseWriter, _ *http.Request) {
		pins := filepath.Join(execRoot, "netns", "sb1")
		if err := netns.Create(pins); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		ctr := exec.Command("nsenter", "--net="+pins, "--", "sleep", "3600")
		shim := exec.Command(os.Args[0], "shim", "-dir", execRoot)
		var pids []string
		for _, c := range []*exec.Cmd{ctr, shim} {
			c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := c.Start(); err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			pids = append(pids, fmt.Sprint(c.Process.Pid))
			go c.Wait()
		}
		io.WriteString(w, strings.Join(pids, " "))
	})
	srv := &http.Server{Handler: mux}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM)
	go func() {
		<-sigc
		fmt.Println("fake: graceful shutdown")
		srv.Close()
	}()
	fmt.Println("fake: listening on", sock)
	srv.Serve(ln)
	return 0
}

func fakeClient(sock, path string) int {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get("http://fake/" + path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "%s", body)
		return 3
	}
	fmt.Printf("%s", body)
	return 0
}
