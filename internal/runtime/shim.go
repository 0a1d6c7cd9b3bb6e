package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ShimMain is the entry point of the shim process (cmd/vxnet's hidden
// "shim" subcommand; args are the arguments after it). The daemon starts one
// shim per container start, in its own session with stdin from /dev/null.
// The shim:
//
//  1. becomes a child subreaper, so the container's init is re-parented to
//     it when `runc create` exits, and it can wait for it;
//  2. runs `runc create` with pipes as the container's stdout and stderr,
//     then `runc start`, and writes started.json;
//  3. copies the pipes into container.log (JSON lines);
//  4. waits for the init, writes exit.json (exit code, or 128+signal, and
//     finish time), then removes runc's state (`runc delete`).
//
// It outlives the daemon, so containers keep running (and their exit is
// recorded) when the daemon is killed. A start failure is recorded in
// exit.json's error field with runc's message.
func ShimMain(args []string) int {
	fs := flag.NewFlagSet("shim", flag.ContinueOnError)
	id := fs.String("id", "", "container ID")
	dir := fs.String("dir", "", "container directory")
	runcPath := fs.String("runc", "runc", "runc binary")
	root := fs.String("root", "", "runc state directory (--root)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *id == "" || *dir == "" || *root == "" {
		fmt.Fprintln(os.Stderr, "shim: -id, -dir and -root are required")
		return 2
	}
	if err := runShim(*id, *dir, *runcPath, *root); err != nil {
		fmt.Fprintf(os.Stderr, "%s shim: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		return 1
	}
	return 0
}

func runShim(id, dir, runcPath, root string) error {
	signal.Ignore(unix.SIGHUP, unix.SIGINT, unix.SIGPIPE)
	fail := func(err error) error {
		// Record the failure for Start; the exit code mirrors Docker's
		// "could not run" code.
		writeJSON(filepath.Join(dir, exitFile), exitRecord{ExitCode: 127, FinishedAt: time.Now().UTC(), Error: err.Error()})
		return err
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("set child subreaper: %w", err))
	}
	lf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fail(fmt.Errorf("open log: %w", err))
	}
	defer lf.Close()
	logs := &logWriter{f: lf}

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	os.Remove(filepath.Join(dir, pidFile))
	create := exec.Command(runcPath, "--root", root, "--log", filepath.Join(dir, runcLogFile), "--log-format", "json",
		"create", "--bundle", filepath.Join(dir, bundleDir), "--pid-file", filepath.Join(dir, pidFile), id)
	create.Stdout, create.Stderr = outW, errW // stdin: /dev/null
	cerr := create.Run()
	outW.Close()
	errW.Close()
	if cerr != nil {
		// Only runc wrote to the pipes: the container process never ran.
		msg := strings.TrimSpace(readUpTo(errR, time.Second) + readUpTo(outR, 100*time.Millisecond))
		if msg == "" {
			msg = runcLogErrors(filepath.Join(dir, runcLogFile))
		}
		if msg == "" {
			msg = cerr.Error()
		}
		return fail(fmt.Errorf("runc create: %s", msg))
	}
	var copiers sync.WaitGroup
	copiers.Add(2)
	go func() { defer copiers.Done(); logs.copyStream("stdout", outR) }()
	go func() { defer copiers.Done(); logs.copyStream("stderr", errR) }()

	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil || pid <= 0 {
		exec.Command(runcPath, "--root", root, "delete", "--force", id).Run()
		return fail(fmt.Errorf("read init pid: %v %v", err, perr))
	}
	if out, err := exec.Command(runcPath, "--root", root, "start", id).CombinedOutput(); err != nil {
		exec.Command(runcPath, "--root", root, "delete", "--force", id).Run()
		reap(pid)
		return fail(fmt.Errorf("runc start: %s", strings.TrimSpace(string(out))))
	}
	writeJSON(filepath.Join(dir, startedFile), startRecord{Pid: pid, StartedAt: time.Now().UTC()})

	code := reap(pid)
	// The pipes close when the last process holding them dies; do not hang
	// on one that escaped the container's pid namespace.
	done := make(chan struct{})
	go func() { copiers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if err := writeJSON(filepath.Join(dir, exitFile), exitRecord{ExitCode: code, FinishedAt: time.Now().UTC()}); err != nil {
		return fmt.Errorf("write exit record: %w", err)
	}
	if out, err := exec.Command(runcPath, "--root", root, "delete", "--force", id).CombinedOutput(); err != nil {
		return fmt.Errorf("runc delete: %s", strings.TrimSpace(string(out)))
	}
	return nil
}

// reap waits for pid (our child since runc create exited and we are a
// subreaper), reaping any other orphans on the way, and returns its exit
// code (128+signal when killed).
func reap(pid int) int {
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: not our child after all; poll its liveness
			for {
				if unix.Kill(pid, 0) != nil {
					return 255
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		if wpid != pid {
			continue
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			return 128 + int(ws.Signal())
		default:
			return 255
		}
	}
}

// readUpTo reads what r holds within d.
func readUpTo(f *os.File, d time.Duration) string {
	f.SetReadDeadline(time.Now().Add(d))
	b, _ := io.ReadAll(io.LimitReader(f, 64*1024))
	return string(b)
}

// runcLogErrors returns the error-level messages of a runc JSON log.
func runcLogErrors(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msgs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") {
			msgs = append(msgs, e.Msg)
		}
	}
	return strings.Join(msgs, "; ")
}
