package conformance

// notManager is what a Docker outside a swarm answers to the swarm
// manager's endpoints.
const notManager = `This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`

// /plugins and /swarm answer as a Docker that is not in a swarm and has
// no managed plugins, so Docker's clients and test harnesses run.
var swarmGroups = []Group{{
	Name: "swarm",
	Cases: []Case{
		{Name: "plugin ls", Args: []string{"plugin", "ls"}, Out: Line("ID        NAME      DESCRIPTION   ENABLED")},
		{Name: "plugin ls names", Args: []string{"plugin", "ls", "--format", "{{.Name}}"}},
		{Name: "node ls", Args: []string{"node", "ls"}, Code: 1, Err: daemonErr(notManager)},
		{Name: "service ls", Args: []string{"service", "ls"}, Code: 1, Err: daemonErr(notManager)},
		{Name: "secret ls", Args: []string{"secret", "ls"}, Code: 1, Err: daemonErr(notManager)},
		{Name: "config ls", Args: []string{"config", "ls"}, Code: 1, Err: daemonErr(notManager)},
		{Name: "stack ls", Args: []string{"stack", "ls"}, Code: 1, Err: daemonErr(notManager)},
		{Name: "swarm leave", Args: []string{"swarm", "leave"}, Code: 1, Err: daemonErr("This node is not part of a swarm")},
		{Name: "swarm init", Args: []string{"swarm", "init"}, Code: 1, Err: daemonErr("vxnet does not support swarm mode (/swarm/init)"), Differs: "swarm"},
		{Name: "swarm join", Args: []string{"swarm", "join", "--token", "x", "192.0.2.99:2377"}, Code: 1,
			Err: daemonErr("vxnet does not support swarm mode (/swarm/join)"), Differs: "swarm"},
	},
}}
