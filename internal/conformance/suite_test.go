package conformance

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/vxnet/vxnet/internal/harness"
	"github.com/vxnet/vxnet/internal/testreq"
)

// A Case is one docker command and what Docker 28 answers to it.
type Case struct {
	Name string
	// Args are the docker CLI's arguments; "${name}" is replaced by the
	// value an earlier case of the run saved under name.
	Args  []string
	Stdin string // given to the CLI on its standard input
	Code  int    // exit code
	// Out and Err match standard output and standard error; the zero
	// Match means the stream must be empty.
	Out, Err Match
	// Within, when set, runs the command again (every 200 ms) until it
	// matches, for at most that long: for effects that follow a command
	// asynchronously (a log line after a signal).
	Within time.Duration
	// Save stores the trimmed standard output under this name for the
	// ${name} of later cases.
	Save string
	// Differs, when set, says the case asserts vxnet's answer where it
	// differs from Docker's on purpose: the key of its entry in
	// docs/conformance.md.
	Differs string
	// Pending, when set, names what vxnet lacks for Docker's answer: the
	// case runs and is listed, but its verdict does not fail the suite
	// (XFAIL while it fails, XPASS once it passes: then remove Pending).
	Pending string
}

// A Group is a sequence of cases sharing the objects its setup makes.
// Cases run in order and may rely on the earlier ones' effects.
type Group struct {
	Name string
	// Setup commands (docker arguments) must all exit 0 before the cases
	// run; if one does not, every case of the group fails.
	Setup [][]string
	Cases []Case
	// Cleanup commands run after the cases whatever happened; their
	// failures are ignored (the final group checks nothing is left).
	Cleanup [][]string
}

// groups is the suite: every group, in the order they run.
func groups() [][]Group {
	return [][]Group{
		systemGroups,
		networkGroups,
		runGroups,
		lifecycleGroups,
		controlGroups,
		dnsGroups,
		portGroups,
		imageGroups,
		dataGroups,
		endpointGroups,
		volumeGroups,
		swarmGroups,
		runOptionGroups,
		refusedGroups,
		finalGroups,
	}
}

// Match is what one output stream must look like. The zero Match wants
// the stream empty.
type Match struct {
	kind  matchKind
	texts []string
}

type matchKind int

const (
	matchEmpty matchKind = iota
	matchExact
	matchHas
	matchRe
	matchAny
)

// Exact wants the stream to be exactly s.
func Exact(s string) Match { return Match{kind: matchExact, texts: []string{s}} }

// Line wants the stream to be exactly s and a newline.
func Line(s string) Match { return Exact(s + "\n") }

// Has wants the stream to contain each of subs.
func Has(subs ...string) Match { return Match{kind: matchHas, texts: subs} }

// Re wants the stream to match the regular expression (unanchored unless
// it says ^ or $; (?s) lets . match newlines).
func Re(expr string) Match { return Match{kind: matchRe, texts: []string{expr}} }

// Any takes whatever the stream holds.
func Any() Match { return Match{kind: matchAny} }

// check reports whether s matches, after replacing ${name} in the
// expected texts with vars (quoted for a regular expression).
func (m Match) check(s string, vars map[string]string) bool {
	switch m.kind {
	case matchEmpty:
		return s == ""
	case matchExact:
		return s == expand(m.texts[0], vars, false)
	case matchHas:
		for _, sub := range m.texts {
			if !strings.Contains(s, expand(sub, vars, false)) {
				return false
			}
		}
		return true
	case matchRe:
		re, err := regexp.Compile(expand(m.texts[0], vars, true))
		return err == nil && re.MatchString(s)
	default:
		return true
	}
}

func (m Match) String() string {
	switch m.kind {
	case matchEmpty:
		return "empty"
	case matchExact:
		return fmt.Sprintf("exactly %q", m.texts[0])
	case matchHas:
		return fmt.Sprintf("containing %q", m.texts)
	case matchRe:
		return fmt.Sprintf("matching /%s/", m.texts[0])
	default:
		return "anything"
	}
}

var varRef = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)\}`)

func expand(s string, vars map[string]string, quote bool) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		v, ok := vars[varRef.FindStringSubmatch(ref)[1]]
		if !ok {
			return ref
		}
		if quote {
			return regexp.QuoteMeta(v)
		}
		return v
	})
}

// Verdicts of a case.
const (
	pass  = "PASS"
	fail  = "FAIL"
	xfail = "XFAIL" // pending and failing, as expected
	xpass = "XPASS" // pending but passing: remove Pending
)

type result struct {
	group, name, verdict, command, note string
	took                                time.Duration
}

// suite runs the cases against one daemon.
type suite struct {
	t       *testing.T
	docker  string   // the docker CLI
	env     []string // DOCKER_HOST and DOCKER_CONFIG for the daemon
	vars    map[string]string
	results []result
}

// dockerCLI finds a Docker 28 client: $VXNET_DOCKER_CLI, else the first
// docker 28 of /usr/local/bin, /usr/bin and $PATH.
func dockerCLI() (string, error) {
	cands := []string{os.Getenv("VXNET_DOCKER_CLI"), "/usr/local/bin/docker", "/usr/bin/docker"}
	if p, err := exec.LookPath("docker"); err == nil {
		cands = append(cands, p)
	}
	var seen []string
	for _, c := range cands {
		if c == "" {
			continue
		}
		out, err := exec.Command(c, "--version").Output()
		if err != nil {
			continue
		}
		if strings.HasPrefix(string(out), "Docker version 28.") {
			return c, nil
		}
		seen = append(seen, c+": "+strings.TrimSpace(string(out)))
	}
	return "", fmt.Errorf("no Docker 28 CLI (found %v)", seen)
}

// TestDockerConformance drives the docker CLI through every case against a
// vxnet daemon and prints the cases with their verdicts.
func TestDockerConformance(t *testing.T) {
	docker, err := dockerCLI()
	if err != nil {
		testreq.Skipf(t, "conformance: %v", err)
	}
	c := harness.New(t, harness.Options{Hosts: 1})
	h := c.Host(0)
	// The upstream resolver is one that refuses at once (nothing listens
	// on the host namespace's loopback): names the embedded DNS server does
	// not know fail fast (SERVFAIL) instead of timing out on the
	// machine's resolvers, which the test namespace cannot reach.
	h.Start("--dns", "127.0.0.1")
	s := &suite{
		t:      t,
		docker: docker,
		env: []string{"DOCKER_HOST=unix://" + h.Socket,
			"DOCKER_CONFIG=" + filepath.Join(h.Dir, "docker-config-conformance")},
		vars: map[string]string{},
	}
	// ${hostdir}: a host directory holding the file h ("hostfile\n"),
	// for binds.
	hostdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostdir, "h"), []byte("hostfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.vars["hostdir"] = hostdir
	start := time.Now()
	defer func() { s.report(time.Since(start)) }()
	for _, gs := range groups() {
		for _, g := range gs {
			t.Run(g.Name, func(t *testing.T) { s.runGroup(t, g) })
		}
	}
}

func (s *suite) runGroup(t *testing.T, g Group) {
	defer func() {
		for _, args := range g.Cleanup {
			s.run("", s.expandArgs(args))
		}
	}()
	for _, args := range g.Setup {
		args = s.expandArgs(args)
		if out, errOut, code := s.run("", args); code != 0 {
			t.Errorf("setup: docker %s: exit %d\nstdout: %q\nstderr: %q", strings.Join(args, " "), code, out, errOut)
			for _, tc := range g.Cases {
				s.results = append(s.results, result{group: g.Name, name: tc.Name, verdict: fail, command: "docker " + strings.Join(tc.Args, " "), note: "setup failed"})
			}
			return
		}
	}
	for _, tc := range g.Cases {
		s.runCase(t, g.Name, tc)
	}
}

func (s *suite) runCase(t *testing.T, group string, tc Case) {
	args := s.expandArgs(tc.Args)
	start := time.Now()
	deadline := start.Add(tc.Within)
	var out, errOut string
	var code int
	var ok bool
	for {
		out, errOut, code = s.run(tc.Stdin, args)
		ok = code == tc.Code && tc.Out.check(out, s.vars) && tc.Err.check(errOut, s.vars)
		if ok || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ok && tc.Save != "" {
		s.vars[tc.Save] = strings.TrimSpace(out)
	}
	r := result{group: group, name: tc.Name, command: "docker " + strings.Join(args, " "), took: time.Since(start)}
	switch {
	case tc.Pending != "" && ok:
		r.verdict, r.note = xpass, "pending: "+tc.Pending+" (passes now: remove Pending)"
	case tc.Pending != "":
		r.verdict, r.note = xfail, "pending: "+tc.Pending
	case ok:
		r.verdict = pass
		if tc.Differs != "" {
			r.note = "differs on purpose: " + tc.Differs
		}
	default:
		r.verdict = fail
		var d strings.Builder
		fmt.Fprintf(&d, "case %s/%s: %s", group, tc.Name, r.command)
		if tc.Stdin != "" {
			fmt.Fprintf(&d, " (stdin %q)", tc.Stdin)
		}
		if tc.Within > 0 {
			fmt.Fprintf(&d, " (retried for %v)", tc.Within)
		}
		mark := func(good bool) string {
			if good {
				return "  "
			}
			return "! "
		}
		fmt.Fprintf(&d, "\n%sexit code: got %d, want %d", mark(code == tc.Code), code, tc.Code)
		fmt.Fprintf(&d, "\n%sstdout: got %q\n          want %s", mark(tc.Out.check(out, s.vars)), out, tc.Out)
		fmt.Fprintf(&d, "\n%sstderr: got %q\n          want %s", mark(tc.Err.check(errOut, s.vars)), errOut, tc.Err)
		t.Error(d.String())
	}
	s.results = append(s.results, r)
}

func (s *suite) expandArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, s.vars, false)
	}
	return out
}

// run runs the docker CLI with args and stdin, with a 60 s bound.
func (s *suite) run(stdin string, args []string) (string, string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.docker, args...)
	cmd.Env = append(cleanEnv(), s.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		return out.String(), errOut.String() + "\nconformance: timed out after 60s", -1
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return out.String(), errOut.String(), ee.ExitCode()
	}
	if err != nil {
		return out.String(), errOut.String() + "\nconformance: " + err.Error(), -1
	}
	return out.String(), errOut.String(), 0
}

// cleanEnv is the test's environment without the DOCKER_* variables that
// would point the CLI elsewhere or change its output.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return env
}

// report prints the table of cases and verdicts, and the totals.
func (s *suite) report(took time.Duration) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tVERDICT\tSECS\tCASE\tCOMMAND\tNOTE")
	n := map[string]int{}
	differ := 0
	for i, r := range s.results {
		n[r.verdict]++
		if r.verdict == pass && r.note != "" {
			differ++
		}
		cmd := r.command
		if len(cmd) > 90 {
			cmd = cmd[:87] + "..."
		}
		fmt.Fprintf(tw, "%d\t%s\t%.1f\t%s/%s\t%s\t%s\n", i+1, r.verdict, r.took.Seconds(), r.group, r.name, cmd, r.note)
	}
	tw.Flush()
	fmt.Fprintf(&b, "conformance: %d cases in %v: %d pass (%d differ from Docker on purpose), %d fail, %d pending (%d of them pass now)\n",
		len(s.results), took.Round(time.Second), n[pass], differ, n[fail], n[xfail]+n[xpass], n[xpass])
	s.t.Log("docker CLI conformance (" + s.docker + "):\n" + b.String())
	if p := os.Getenv("VXNET_CONFORMANCE_REPORT"); p != "" {
		os.WriteFile(p, []byte(b.String()), 0o644)
	}
}
