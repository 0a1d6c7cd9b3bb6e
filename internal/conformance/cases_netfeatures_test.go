package conformance

import "time"

// Names in containers: the embedded DNS server on user networks, aliases,
// NAME.NETWORK, PTR, rename; /etc/hosts and resolv.conf options on the
// default bridge.
var dnsGroups = []Group{{
	Name: "dns",
	Setup: [][]string{
		{"network", "create", "--subnet", "10.202.0.0/24", "dnet"},
		{"network", "create", "--subnet", "10.203.0.0/24", "dother"},
		{"run", "-d", "--name", "d1", "--network", "dnet", "--ip", "10.202.0.10", "--network-alias", "web", "busybox", "sleep", "1d"},
		{"run", "-d", "--name", "d2", "--network", "dnet", "busybox", "sleep", "1d"},
		{"run", "-d", "--name", "d3", "--network", "dother", "busybox", "sleep", "1d"},
		{"run", "-d", "--name", "d4", "busybox", "sleep", "1d"},
	},
	Cases: []Case{
		{Name: "resolv.conf", Args: []string{"exec", "d2", "cat", "/etc/resolv.conf"}, Out: Has("nameserver 127.0.0.11\n", "options ndots:0")},
		{Name: "name", Args: []string{"exec", "d2", "nslookup", "d1"}, Out: Re(`Name:\s+d1\nAddress: 10\.202\.0\.10\n`)},
		{Name: "alias", Args: []string{"exec", "d2", "nslookup", "web"}, Out: Re(`Name:\s+web\nAddress: 10\.202\.0\.10\n`)},
		{Name: "name.network", Args: []string{"exec", "d2", "nslookup", "d1.dnet"}, Out: Re(`Name:\s+d1\.dnet\nAddress: 10\.202\.0\.10\n`)},
		{Name: "ptr", Args: []string{"exec", "d2", "nslookup", "10.202.0.10"}, Out: Re(`10\.0\.202\.10\.in-addr\.arpa\s+name = d1\.dnet`)},
		{Name: "ping by name", Args: []string{"exec", "d2", "ping", "-c1", "-W2", "d1"}, Out: Has("PING d1 (10.202.0.10)", "1 packets received")},
		{Name: "other network's name", Args: []string{"exec", "d3", "nslookup", "d1"}, Code: 1, Out: Has("server can't find d1")},
		{Name: "connect with alias", Args: []string{"network", "connect", "--alias", "extra", "dnet", "d3"}},
		{Name: "alias from connect", Args: []string{"exec", "d2", "nslookup", "extra"}, Out: Re(`Name:\s+extra\nAddress: 10\.202\.0\.\d+\n`)},
		{Name: "rename", Args: []string{"rename", "d1", "d1new"}},
		{Name: "renamed resolves", Args: []string{"exec", "d2", "nslookup", "d1new"}, Out: Re(`Name:\s+d1new\nAddress: 10\.202\.0\.10\n`), Within: 10 * time.Second},
		{Name: "old name gone", Args: []string{"exec", "d2", "nslookup", "d1"}, Code: 1, Out: Has("server can't find d1"), Within: 10 * time.Second},
		{Name: "default bridge hosts", Args: []string{"run", "--rm", "--add-host", "foo.example:10.1.2.3", "busybox", "grep", "foo", "/etc/hosts"},
			Out: Line("10.1.2.3\tfoo.example")},
		{Name: "link", Args: []string{"run", "--rm", "--link", "d4:lnk", "busybox", "ping", "-c1", "-W2", "lnk"}, Out: Has("1 packets received")},
		{Name: "dns option", Args: []string{"run", "--rm", "--dns", "10.9.9.9", "--dns-search", "conf.example", "busybox", "cat", "/etc/resolv.conf"},
			Out: Has("nameserver 10.9.9.9", "search conf.example")},
	},
	Cleanup: [][]string{{"rm", "-f", "d1", "d1new", "d2", "d3", "d4"}, {"network", "rm", "dnet", "dother"}},
}}

// Published ports: -p, -P, docker port, a taken port, traffic through
// the published port from another container (hairpin through the host).
var portGroups = []Group{{
	Name: "ports",
	Cases: []Case{
		{Name: "publish", Args: []string{"run", "-d", "--name", "p1", "-p", "18080:80", "busybox", "sh", "-c",
			"echo hello-port > /tmp/index.html; exec httpd -f -p 80 -h /tmp"}, Out: Re(id64)},
		{Name: "port", Args: []string{"port", "p1"}, Out: Re(`^80/tcp -> 0\.0\.0\.0:18080\n(80/tcp -> \[::\]:18080\n)?$`)},
		{Name: "port of a port", Args: []string{"port", "p1", "80"}, Out: Re(`^0\.0\.0\.0:18080\n(\[::\]:18080\n)?$`)},
		{Name: "port not published", Args: []string{"port", "p1", "81"}, Code: 1, Err: Line("Error: No public port '81' published for p1")},
		{Name: "ps ports", Args: []string{"ps", "--filter", "name=p1", "--format", "{{.Ports}}"}, Out: Re(`^0\.0\.0\.0:18080->80/tcp(, \[::\]:18080->80/tcp)?\n$`)},
		{Name: "port bindings", Args: []string{"inspect", "-f", "{{json .HostConfig.PortBindings}}", "p1"}, Out: Line(`{"80/tcp":[{"HostIp":"","HostPort":"18080"}]}`)},
		{Name: "traffic", Args: []string{"run", "--rm", "busybox", "wget", "-qO-", "http://172.17.0.1:18080/"}, Out: Line("hello-port"), Within: 10 * time.Second},
		{Name: "port taken", Args: []string{"run", "-d", "--name", "p2", "-p", "18080:80", "busybox", "sleep", "1d"}, Code: 125, Out: Re(id64),
			Err: Re(`^docker: Error response from daemon: .*Bind for 0\.0\.0\.0:18080 failed: port is already allocated` + "\n\nRun 'docker run --help' for more information\n$")},
		{Name: "publish all", Args: []string{"run", "-d", "--name", "p3", "-P", "--expose", "7000", "busybox", "sleep", "1d"}, Out: Re(id64)},
		{Name: "port of publish all", Args: []string{"port", "p3"}, Out: Re(`^7000/tcp -> 0\.0\.0\.0:[1-9][0-9]*\n`)},
		{Name: "port range", Args: []string{"run", "-d", "--name", "p5", "-p", "18100-18101:8100-8101", "busybox", "sleep", "1d"}, Out: Re(id64)},
		{Name: "port of a range", Args: []string{"port", "p5"},
			Out: Re(`^8100/tcp -> 0\.0\.0\.0:18100\n(8100/tcp -> \[::\]:18100\n)?8101/tcp -> 0\.0\.0\.0:18101\n(8101/tcp -> \[::\]:18101\n)?$`)},
		{Name: "udp and host ip", Args: []string{"run", "-d", "--name", "p4", "-p", "127.0.0.1:18053:53/udp", "busybox", "sleep", "1d"}, Out: Re(id64)},
		{Name: "port of udp", Args: []string{"port", "p4"}, Out: Line("53/udp -> 127.0.0.1:18053")},
	},
	Cleanup: [][]string{{"rm", "-f", "p1", "p2", "p3", "p4", "p5"}},
}}

// Options vxnet does not implement are refused naming their field (the
// docker CLI exits 125); Docker would run the container.
var refusedGroups = []Group{{
	Name: "refused",
	Cases: []Case{
		refused("device cgroup rule", "HostConfig.DeviceCgroupRules", "--device-cgroup-rule", "c 1:3 rwm"),
		refused("runtime", "HostConfig.Runtime", "--runtime", "other"),
		refused("storage opt", "HostConfig.StorageOpt", "--storage-opt", "size=1G"),
		refused("cgroup parent", "HostConfig.CgroupParent", "--cgroup-parent", "conf"),
		refused("userns", "HostConfig.UsernsMode", "--userns", "host"),
		refused("log driver", "HostConfig.LogConfig.Type", "--log-driver", "syslog"),
		{Name: "network prune filter", Args: []string{"network", "prune", "-f", "--filter", "until=1h"}, Code: 1,
			Err: daemonErr("vxnet does not support network prune filters"), Differs: "refused"},
	},
}}

func refused(name, field string, flag ...string) Case {
	args := append(append([]string{"run", "--rm"}, flag...), "busybox", "true")
	return Case{Name: name, Args: args, Code: 125, Err: runErr("vxnet does not support " + field), Differs: "refused"}
}

// Whatever the groups made is gone: refused and failed runs left nothing.
var finalGroups = []Group{{
	Name: "final",
	Cases: []Case{
		{Name: "no containers", Args: []string{"ps", "-aq"}},
		{Name: "default networks", Args: []string{"network", "ls", "--format", "{{.Name}}"}, Out: Exact("bridge\nhost\nnone\n")},
		{Name: "info no containers", Args: []string{"info", "--format", "{{.Containers}}"}, Out: Line("0")},
		{Name: "no volumes", Args: []string{"volume", "ls", "-q"}},
	},
}}
