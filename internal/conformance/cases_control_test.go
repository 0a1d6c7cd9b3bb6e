package conformance

import "time"

// pause, unpause, top, stats, restart policies and events.
var controlGroups = []Group{{
	Name:  "control",
	Setup: [][]string{{"run", "-d", "--name", "cp", "busybox", "sleep", "1d"}},
	Cases: []Case{
		{Name: "id", Args: []string{"inspect", "-f", "{{.Id}}", "cp"}, Out: Re(id64), Save: "cp"},
		{Name: "pause", Args: []string{"pause", "cp"}, Out: Line("cp")},
		{Name: "paused state", Args: []string{"inspect", "-f", "{{.State.Status}} {{.State.Running}} {{.State.Paused}}", "cp"}, Out: Line("paused true true")},
		{Name: "ps paused", Args: []string{"ps", "--filter", "status=paused", "--format", "{{.Names}} {{.State}}"}, Out: Line("cp paused")},
		{Name: "ps paused status", Args: []string{"ps", "--format", "{{.Status}}"}, Out: Re(`^Up .* \(Paused\)\n$`)},
		{Name: "pause paused", Args: []string{"pause", "cp"}, Code: 1, Err: daemonErr("container ${cp} is already paused")},
		{Name: "exec paused", Args: []string{"exec", "cp", "true"}, Code: 1,
			Err: daemonErr("Container ${cp} is paused, unpause the container before exec")},
		{Name: "attach paused", Args: []string{"attach", "cp"}, Code: 1, Err: Line("You cannot attach to a paused container, unpause it first")},
		{Name: "unpause", Args: []string{"unpause", "cp"}, Out: Line("cp")},
		{Name: "unpause running", Args: []string{"unpause", "cp"}, Code: 1, Err: daemonErr("Container ${cp} is not paused")},
		{Name: "exec after unpause", Args: []string{"exec", "cp", "echo", "thawed"}, Out: Line("thawed")},
		{Name: "top", Args: []string{"top", "cp", "-o", "pid,args"}, Out: Re(`^PID +COMMAND\n[0-9]+ +sleep 1d\n$`)},
		{Name: "top without pid", Args: []string{"top", "cp", "-o", "args"}, Code: 1, Err: daemonErr("Couldn't find PID field in ps output")},
		{Name: "top missing", Args: []string{"top", "nosuch"}, Code: 1, Err: daemonErr("No such container: nosuch")},
		{Name: "stats", Args: []string{"stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "cp"}, Out: Line("cp 1")},
		{Name: "stop", Args: []string{"stop", "-t", "1", "cp"}, Out: Line("cp")},
		{Name: "pause stopped", Args: []string{"pause", "cp"}, Code: 1, Err: daemonErr("container ${cp} is not running")},
		{Name: "top stopped", Args: []string{"top", "cp"}, Code: 1, Err: daemonErr("container ${cp} is not running")},
		{Name: "stats stopped", Args: []string{"stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", "cp"}, Out: Line("cp 0")},
		{Name: "restart on-failure", Args: []string{"run", "-d", "--name", "rp", "--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3"}, Out: Re(id64)},
		{Name: "restarted twice", Args: []string{"inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "rp"},
			Out: Line("2 exited 3"), Within: 30 * time.Second},
		{Name: "restart policy", Args: []string{"inspect", "-f", "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}", "rp"},
			Out: Line("on-failure 2")},
		{Name: "created", Args: []string{"inspect", "-f", "{{.Created}}", "rp"}, Out: Re(`^20`), Save: "rpc"},
		{Name: "events", Args: []string{"events", "--since", "${rpc}", "--until", "0s", "--filter", "container=rp", "--format", "{{.Type}} {{.Action}}"},
			// The CLI sends --until in whole seconds: the last events show once that second is past.
			Out: Exact("container create\ncontainer start\ncontainer die\ncontainer start\ncontainer die\ncontainer start\ncontainer die\n"), Within: 10 * time.Second},
		{Name: "events die code", Args: []string{"events", "--since", "${rpc}", "--until", "0s", "--filter", "container=rp", "--filter", "event=die",
			"--format", "{{.Actor.Attributes.exitCode}} {{.Actor.Attributes.name}}"}, Out: Exact("3 rp\n3 rp\n3 rp\n"), Within: 10 * time.Second},
		{Name: "events bad filter", Args: []string{"events", "--until", "0s", "--filter", "nosuch=1"}, Code: 1, Err: daemonErr("invalid filter 'nosuch'")},
		{Name: "restart bad policy", Args: []string{"run", "-d", "--restart", "always:2", "busybox", "true"}, Code: 125,
			Err: runErr("invalid restart policy: maximum retry count can only be used with 'on-failure'")},
		{Name: "failed run stays created", Args: []string{"run", "--name", "rbad", "busybox", "nosuch"}, Code: 127,
			Err: Re(`executable file not found in \$PATH`)},
		{Name: "failed run state", Args: []string{"inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "rbad"}, Out: Line("created 127")},
	},
	Cleanup: [][]string{{"rm", "-f", "cp", "rp", "rbad"}},
}}
