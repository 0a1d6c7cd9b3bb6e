package conformance

// docker image commands on the local busybox image: tag, inspect, images,
// history, rmi with Docker's untag and conflict answers. Registry pulls and
// pushes, save and load are tested against a real registry in internal/e2e.
var imageGroups = []Group{{
	Name: "images",
	Cases: []Case{
		{Name: "busybox id", Args: []string{"images", "-q", "busybox"}, Out: Re(`^[0-9a-f]{12}\n$`), Save: "bbid"},
		{Name: "tag", Args: []string{"tag", "busybox", "conf/bb:1"}},
		{Name: "images of a repository", Args: []string{"images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "conf/bb"}, Out: Line("conf/bb:1 ${bbid}")},
		{Name: "image inspect os", Args: []string{"image", "inspect", "-f", "{{.Os}}", "conf/bb:1"}, Out: Line("linux")},
		{Name: "image inspect tags", Args: []string{"image", "inspect", "-f", "{{.RepoTags}}", "busybox"}, Out: Line("[busybox:latest conf/bb:1]")},
		{Name: "image inspect cmd", Args: []string{"image", "inspect", "-f", "{{.Config.Cmd}}", "busybox"}, Out: Line("[sh]")},
		{Name: "image inspect missing", Args: []string{"image", "inspect", "conf/nosuch"}, Code: 1, Out: Any(), Err: Has("No such image: conf/nosuch")},
		{Name: "history", Args: []string{"history", "-q", "busybox"}, Out: Line("${bbid}")},
		{Name: "tag missing", Args: []string{"tag", "conf/nosuch", "conf/x:1"}, Code: 1, Err: daemonErr("No such image: conf/nosuch")},
		{Name: "rmi id of several names", Args: []string{"rmi", "${bbid}"}, Code: 1,
			Err: daemonErr("conflict: unable to delete ${bbid} (must be forced) - image is referenced in multiple repositories")},
		{Name: "rmi a second name", Args: []string{"rmi", "conf/bb:1"}, Out: Line("Untagged: conf/bb:1")},
		{Name: "rmi missing", Args: []string{"rmi", "conf/nosuch"}, Code: 1, Err: daemonErr("No such image: conf/nosuch")},
		{Name: "rmi used by a running container", Args: []string{"run", "-d", "--name", "img-user", "busybox", "sleep", "1d"}, Out: Re(id64)},
		{Name: "rmi -f running container's image", Args: []string{"rmi", "-f", "busybox"}, Code: 1,
			Err: Re(`^Error response from daemon: conflict: unable to delete [0-9a-f]{12} \(cannot be forced\) - image is being used by running container [0-9a-f]{12}\n$`)},
	},
	Cleanup: [][]string{{"rm", "-f", "img-user"}, {"rmi", "conf/bb:1"}},
}}
