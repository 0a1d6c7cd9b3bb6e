package model

// External is a network namespace that vxnet did not make, attached to a
// vxnet network on behalf of another runtime: a CNI runtime (containerd,
// Kubernetes, cnitool) or Docker Engine through the network plugin. Its
// endpoint is an ordinary Endpoint (EndpointID), advertised, reconciled and
// purged like those of vxnet's own containers; the endpoint's ContainerID is
// the External's ID.
type External struct {
	ID string `json:"ID"`
	// Owner is who asked: OwnerCNI or OwnerDocker.
	Owner string `json:"Owner"`
	// Key is the owner's identity of the attachment, unique per owner: CNI's
	// "<container ID>/<ifname>", Docker's endpoint ID.
	Key        string `json:"Key"`
	NetworkID  string `json:"NetworkID"`
	EndpointID string `json:"EndpointID"`
	// NetnsPath is the namespace the interface lives in (CNI's CNI_NETNS);
	// empty when the owner moves the interface itself (Docker).
	NetnsPath string `json:"NetnsPath,omitempty"`
	// SandboxKey is Docker's name for the container's namespace (the
	// bind-mounted file dockerd makes; it becomes a namespace only when
	// the container starts). vxnet's DNS server answers there at
	// dns.DockerAddr, where Docker's resolver forwards the names it does
	// not know.
	SandboxKey string `json:"SandboxKey,omitempty"`
	// IfName is the interface name in NetnsPath, or for Docker the name of
	// the interface left in the host namespace for dockerd to move.
	IfName string `json:"IfName"`
}

// Owners of external attachments.
const (
	OwnerCNI    = "cni"
	OwnerDocker = "docker"
)
