package conformance

// Shared expectations.
const (
	id64     = `^[0-9a-f]{64}\n$`
	runUsage = "\n\nRun 'docker run --help' for more information\n"
)

// daemonErr is how the docker CLI prints an error the daemon answered.
func daemonErr(msg string) Match { return Line("Error response from daemon: " + msg) }

// noUserSubnet is Docker 28's refusal of a static address on a network
// whose subnets all came from the default pool.
const noUserSubnet = "user specified IP address is supported only when connecting to networks with user configured subnets"

// runErr is how docker run prints an error the daemon answered.
func runErr(msg string) Match { return Exact("docker: Error response from daemon: " + msg + runUsage) }

// The version and info commands.
var systemGroups = []Group{{
	Name: "system",
	Cases: []Case{
		{Name: "version client API", Args: []string{"version", "--format", "{{.Client.APIVersion}}"}, Out: Line("1.50")},
		{Name: "version server API", Args: []string{"version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}"}, Out: Re(`^1\.5\d 1\.\d+\n$`)},
		{Name: "version components", Args: []string{"version", "--format", "{{range .Server.Components}}{{.Name}} {{end}}"}, Out: Line("Engine containerd runc docker-init ")},
		{Name: "version containerd", Args: []string{"version", "--format", "{{range .Server.Components}}{{if eq .Name \"containerd\"}}{{.Version}}{{end}}{{end}}"}, Out: Re(`^v?2\.4\.2`)},
		{Name: "version server os", Args: []string{"version", "--format", "{{.Server.Os}}"}, Out: Line("linux")},
		{Name: "info os type", Args: []string{"info", "--format", "{{.OSType}}"}, Out: Line("linux")},
		{Name: "info no containers", Args: []string{"info", "--format", "{{.Containers}} {{.ContainersRunning}}"}, Out: Line("0 0")},
		{Name: "info images", Args: []string{"info", "--format", "{{.Images}}"}, Out: Re(`^[1-9][0-9]*\n$`)},
		{Name: "info swarm inactive", Args: []string{"info", "--format", "{{.Swarm.LocalNodeState}}"}, Out: Line("inactive")},
		{Name: "images busybox", Args: []string{"images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"}, Out: Line("busybox:latest")},
		{Name: "unknown command", Args: []string{"nosuchcmd"}, Code: 1,
			Err: Exact("docker: unknown command: docker nosuchcmd\n\nRun 'docker --help' for more information\n")},
	},
}}

// The network commands.
var networkGroups = []Group{{
	Name: "network",
	Cases: []Case{
		{Name: "create", Args: []string{"network", "create", "--subnet", "10.201.0.0/24", "cnet"}, Out: Re(id64), Save: "cnet"},
		{Name: "create duplicate name", Args: []string{"network", "create", "cnet"}, Code: 1,
			Err: daemonErr("network with name cnet already exists")},
		{Name: "create overlapping subnet", Args: []string{"network", "create", "--subnet", "10.201.0.0/25", "covl"}, Code: 1,
			Err: Re(`^Error response from daemon: .*Pool overlaps with other one on this address space`)},
		{Name: "create unknown driver", Args: []string{"network", "create", "-d", "nosuchdrv", "cx"}, Code: 1,
			Err: daemonErr(`plugin "nosuchdrv" not found`)},
		{Name: "create second host network", Args: []string{"network", "create", "-d", "host", "chost"}, Code: 1,
			Err: daemonErr(`only one instance of "host" network is allowed`)},
		{Name: "create gateway without subnet", Args: []string{"network", "create", "--gateway", "10.1.1.1", "cx"}, Code: 1,
			Err: Line("every ip-range or gateway must have a corresponding subnet")},
		{Name: "create two equal subnets", Args: []string{"network", "create", "--subnet", "10.9.0.0/24", "--subnet", "10.9.0.0/24", "cx"}, Code: 1,
			Err: Line("multiple overlapping subnet configuration is not supported")},
		{Name: "create bad subnet", Args: []string{"network", "create", "--subnet", "bad", "cx"}, Code: 1,
			Err:     daemonErr("invalid network config: invalid subnet bad: invalid CIDR block notation"),
			Differs: "one-line"},
		{Name: "create name with spaces", Args: []string{"network", "create", "my net"}, Out: Re(id64)},
		{Name: "inspect name with spaces", Args: []string{"network", "inspect", "-f", "{{.Name}} {{.Driver}}", "my net"}, Out: Line("my net bridge")},
		{Name: "rm name with spaces", Args: []string{"network", "rm", "my net"}, Out: Line("my net")},
		{Name: "create internal with label", Args: []string{"network", "create", "--internal", "--label", "team=a", "cint"}, Out: Re(id64)},
		{Name: "inspect internal and label", Args: []string{"network", "inspect", "-f", `{{.Internal}} {{index .Labels "team"}}`, "cint"}, Out: Line("true a")},
		{Name: "create ipv6 without subnet", Args: []string{"network", "create", "--ipv6", "cv6"}, Out: Re(id64)},
		{Name: "inspect ipv6 subnet", Args: []string{"network", "inspect", "-f", "{{.EnableIPv6}} {{range .IPAM.Config}}{{.Subnet}} {{end}}", "cv6"},
			Out: Re(`^true \d+\.\d+\.\d+\.\d+/\d+ fd[0-9a-f:]+::/64 \n$`)},
		{Name: "create ipv6 with subnet", Args: []string{"network", "create", "--ipv6", "--subnet", "fd00:c0f::/64", "cv6s"}, Out: Re(id64)},
		{Name: "inspect ipv6 gateway", Args: []string{"network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", "cv6s"},
			Out: Re(`^(\S+ \S+)?fd00:c0f::/64 fd00:c0f::1\n$`)},
		{Name: "create bridge name option", Args: []string{"network", "create", "-o", "com.docker.network.bridge.name=brconf0", "cbr"}, Out: Re(id64)},
		{Name: "inspect bridge name option", Args: []string{"network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, "cbr"}, Out: Line("brconf0")},
		{Name: "ls names", Args: []string{"network", "ls", "--format", "{{.Name}}"}, Out: Exact("bridge\ncbr\ncint\ncnet\ncv6\ncv6s\nhost\nnone\n")},
		{Name: "ls drivers", Args: []string{"network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}", "--filter", "name=o"},
			Out: Exact("host host local\nnone null local\n")},
		{Name: "ls filter driver", Args: []string{"network", "ls", "--filter", "driver=null", "--format", "{{.Name}}"}, Out: Line("none")},
		{Name: "ls quiet no-trunc", Args: []string{"network", "ls", "-q", "--no-trunc", "--filter", "name=cnet"}, Out: Line("${cnet}")},
		{Name: "ls bad filter", Args: []string{"network", "ls", "--filter", "nosuch=x"}, Code: 1, Err: daemonErr("invalid filter 'nosuch'")},
		{Name: "inspect subnet", Args: []string{"network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}", "cnet"},
			Out: Line("10.201.0.0/24 10.201.0.1")},
		{Name: "inspect fields", Args: []string{"network", "inspect", "-f", "{{.Driver}} {{.Scope}} {{.Internal}} {{.Attachable}} {{.EnableIPv6}}", "cnet"},
			Out: Line("bridge local false false false")},
		{Name: "inspect by id", Args: []string{"network", "inspect", "-f", "{{.Name}}", "${cnet}"}, Out: Line("cnet")},
		{Name: "inspect id", Args: []string{"network", "inspect", "-f", "{{.Id}}", "cnet"}, Out: Line("${cnet}")},
		{Name: "inspect missing", Args: []string{"network", "inspect", "nosuch"}, Code: 1, Out: Line("[]"), Err: daemonErr("network nosuch not found")},
		{Name: "rm missing", Args: []string{"network", "rm", "nosuch"}, Code: 1,
			Err: Exact("Error response from daemon: network nosuch not found\nexit status 1\n")},
		{Name: "rm -f missing", Args: []string{"network", "rm", "-f", "nosuch"}},
		{Name: "rm predefined", Args: []string{"network", "rm", "bridge"}, Code: 1,
			Err: Exact("Error response from daemon: bridge is a pre-defined network and cannot be removed\nexit status 1\n")},
		{Name: "rm predefined host", Args: []string{"network", "rm", "host"}, Code: 1,
			Err: Exact("Error response from daemon: host is a pre-defined network and cannot be removed\nexit status 1\n")},
		{Name: "run on network", Args: []string{"run", "-d", "--name", "cn-a", "--network", "cnet", "busybox", "sleep", "1d"}, Out: Re(id64), Save: "cna"},
		{Name: "run static ip", Args: []string{"run", "-d", "--name", "cn-b", "--network", "cnet", "--ip", "10.201.0.50", "busybox", "sleep", "1d"}, Out: Re(id64)},
		{Name: "inspect static ip", Args: []string{"inspect", "-f", "{{.NetworkSettings.Networks.cnet.IPAddress}}", "cn-b"}, Out: Line("10.201.0.50")},
		{Name: "ping on network", Args: []string{"exec", "cn-a", "ping", "-c1", "-W2", "10.201.0.50"}, Out: Has("1 packets received")},
		{Name: "network containers", Args: []string{"network", "inspect", "-f", `{{range .Containers}}{{if eq .Name "cn-b"}}{{.IPv4Address}}{{end}}{{end}}`, "cnet"},
			Out: Line("10.201.0.50/24")},
		{Name: "connect", Args: []string{"network", "connect", "bridge", "cn-a"}},
		{Name: "connect twice", Args: []string{"network", "connect", "bridge", "cn-a"}, Code: 1,
			Err: daemonErr("endpoint with name cn-a already exists in network bridge")},
		{Name: "connected networks", Args: []string{"inspect", "-f", "{{len .NetworkSettings.Networks}} {{.NetworkSettings.Networks.bridge.Gateway}}", "cn-a"},
			Out: Line("2 172.17.0.1")},
		{Name: "disconnect", Args: []string{"network", "disconnect", "bridge", "cn-a"}},
		{Name: "disconnect twice", Args: []string{"network", "disconnect", "bridge", "cn-a"}, Code: 1,
			Err: daemonErr("container ${cna} is not connected to network bridge")},
		{Name: "connect missing network", Args: []string{"network", "connect", "nosuch", "cn-a"}, Code: 1, Err: daemonErr("network nosuch not found")},
		{Name: "connect missing container", Args: []string{"network", "connect", "cnet", "nosuch"}, Code: 1, Err: daemonErr("No such container: nosuch")},
		{Name: "disconnect missing container", Args: []string{"network", "disconnect", "cnet", "nosuch"}, Code: 1, Err: daemonErr("No such container: nosuch")},
		// A static address outside the network's configured subnets, in
		// Docker 28's words (moby's validateEndpointSettings, line break
		// included): cint has no configured subnet (its subnet is from the
		// default pool), csub has one that does not hold the address.
		{Name: "connect with ip and alias", Args: []string{"network", "connect", "--ip", "10.201.0.77", "--alias", "extra", "cint", "cn-b"}, Code: 1,
			Err: daemonErr("invalid endpoint settings:\n" + noUserSubnet)},
		{Name: "run with ip, no configured subnet", Args: []string{"run", "--rm", "--network", "cint", "--ip", "10.201.0.78", "busybox", "true"}, Code: 125,
			Err: runErr("invalid config for network cint: invalid endpoint settings:\n" + noUserSubnet)},
		{Name: "create subnet network", Args: []string{"network", "create", "--subnet", "10.204.0.0/24", "--ip-range", "10.204.0.128/25", "csub"}, Out: Re(id64)},
		{Name: "connect with ip outside subnet", Args: []string{"network", "connect", "--ip", "10.201.0.77", "--alias", "extra", "csub", "cn-b"}, Code: 1,
			Err: daemonErr("invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.201.0.77")},
		{Name: "connect with ip outside ip-range", Args: []string{"network", "connect", "--ip", "10.204.0.7", "csub", "cn-b"}, Code: 1,
			Err: daemonErr("invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.204.0.7")},
		{Name: "run with ip outside subnet", Args: []string{"run", "--rm", "--network", "csub", "--ip", "10.201.0.78", "busybox", "true"}, Code: 125,
			Err: runErr("invalid config for network csub: invalid endpoint settings:\nno configured subnet or ip-range contain the IP address 10.201.0.78")},
		{Name: "connect with ip in ip-range", Args: []string{"network", "connect", "--ip", "10.204.0.200", "--alias", "extra", "csub", "cn-b"}},
		{Name: "inspect connected ip", Args: []string{"inspect", "-f", "{{.NetworkSettings.Networks.csub.IPAddress}} {{.NetworkSettings.Networks.csub.Aliases}}", "cn-b"},
			Out: Line("10.204.0.200 [extra]")},
		{Name: "disconnect subnet network", Args: []string{"network", "disconnect", "csub", "cn-b"}},
		{Name: "rm subnet network", Args: []string{"network", "rm", "csub"}, Out: Line("csub")},
		{Name: "rm network in use", Args: []string{"network", "rm", "cnet"}, Code: 1,
			Err: Exact("Error response from daemon: error while removing network: network cnet id ${cnet} has active endpoints\nexit status 1\n")},
		{Name: "prune unused", Args: []string{"network", "prune", "-f"}, Out: Exact("Deleted Networks:\ncbr\ncint\ncv6\ncv6s\n\n")},
		{Name: "ls after prune", Args: []string{"network", "ls", "--format", "{{.Name}}"}, Out: Exact("bridge\ncnet\nhost\nnone\n")},
		{Name: "rm -f container", Args: []string{"rm", "-f", "cn-a", "cn-b"}, Out: Exact("cn-a\ncn-b\n")},
		{Name: "rm network", Args: []string{"network", "rm", "cnet"}, Out: Line("cnet")},
	},
	Cleanup: [][]string{{"rm", "-f", "cn-a", "cn-b"}, {"network", "rm", "-f", "cnet", "cint", "csub", "cv6", "cv6s", "cbr", "my net"}},
}}
