package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/archive"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/vxnet/vxnet/internal/runtime/image"
)

// Registry access and image archives go through containerd's client: its
// docker remotes resolver (Docker Registry HTTP API v2 / OCI distribution)
// for pull and push, its archive importer and exporter (Docker's and the
// OCI tar formats) for load and save. Images pulled or loaded are kept in
// containerd's content store under a record named by their ID
// ("sha256:<hex>" of the config, Docker's image ID) and recorded in vxnet's
// image store with their names; the names live in vxnet's store only.

// RegistryAuth is the credential of a pull or push (Docker's AuthConfig,
// from the request's X-Registry-Auth header).
type RegistryAuth struct {
	Username, Password string
	// IdentityToken is an OAuth refresh token; RegistryToken a bearer
	// token sent as is.
	IdentityToken, RegistryToken string
}

// ErrInsecureRegistry wraps the failure of a registry that answered plain
// HTTP to an HTTPS request.
var ErrInsecureRegistry = errors.New("registry is not listed with --insecure-registry")

// insecure reports whether host (host[:port] of a registry) may be spoken
// to over plain HTTP: listed in InsecureRegistries (as host[:port] or a
// CIDR holding its address), or a loopback registry, which Docker treats
// as insecure without being listed.
func (r *Containerd) insecure(host string) bool {
	if ok, _ := docker.MatchLocalhost(host); ok {
		return true
	}
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	addr, aerr := netip.ParseAddr(h)
	for _, e := range r.opts.InsecureRegistries {
		if e == host || e == h {
			return true
		}
		if p, err := netip.ParsePrefix(e); err == nil && aerr == nil && p.Contains(addr) {
			return true
		}
	}
	return false
}

// CheckInsecureRegistry validates one --insecure-registry value: host,
// host:port or a CIDR (no scheme, no path).
func CheckInsecureRegistry(v string) error {
	if v == "" || strings.Contains(v, "://") || strings.ContainsAny(v, " @") {
		return fmt.Errorf("invalid --insecure-registry %q: want HOST[:PORT] or a CIDR", v)
	}
	if strings.Contains(v, "/") {
		if _, err := netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("invalid --insecure-registry %q: %v", v, err)
		}
	}
	return nil
}

func (r *Containerd) resolver(auth RegistryAuth) remotes.Resolver {
	hosts, hdr := r.registryHosts(auth)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts, Headers: hdr})
}

// registryHosts configures containerd's registry hosts with the
// credential and the plain-HTTP rule.
func (r *Containerd) registryHosts(auth RegistryAuth) (docker.RegistryHosts, http.Header) {
	aopts := []docker.AuthorizerOpt{docker.WithAuthCreds(func(string) (string, string, error) {
		if auth.IdentityToken != "" {
			return "", auth.IdentityToken, nil
		}
		return auth.Username, auth.Password, nil
	})}
	var hdr map[string][]string
	if auth.RegistryToken != "" {
		hdr = map[string][]string{"Authorization": {"Bearer " + auth.RegistryToken}}
		aopts = append(aopts, docker.WithAuthHeader(hdr))
	}
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithAuthorizer(docker.NewDockerAuthorizer(aopts...)),
		docker.WithPlainHTTP(func(host string) (bool, error) { return r.insecure(host), nil }),
	)
	return hosts, hdr
}

// Login checks the credential against the registry server (docker login):
// its API root (/v2/) must answer 200 once containerd's authorizer has
// answered the registry's challenge with the credential. "" or Docker
// Hub's names mean Docker Hub.
func (r *Containerd) Login(ctx context.Context, server string, auth RegistryAuth) error {
	host := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	host, _, _ = strings.Cut(host, "/")
	switch host {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		host = "docker.io"
	}
	hosts, hdr := r.registryHosts(auth)
	rhs, err := hosts(host)
	if err != nil || len(rhs) == 0 {
		return fmt.Errorf("login to %s: no registry host (%v): %w", server, err, ErrInvalid)
	}
	rh := rhs[0]
	url := rh.Scheme + "://" + rh.Host + rh.Path + "/"
	for try := 0; try < 2; try++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if err := rh.Authorizer.Authorize(ctx, req); err != nil {
			return fmt.Errorf("login attempt to %s failed: %v: %w", url, err, ErrUnauthorized)
		}
		resp, err := rh.Client.Do(req)
		if err != nil {
			return registryError("login to", host, err)
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusUnauthorized && try == 0:
			if err := rh.Authorizer.AddResponses(ctx, []*http.Response{resp}); err != nil {
				return fmt.Errorf("login attempt to %s failed: %v: %w", url, err, ErrUnauthorized)
			}
			continue
		}
		return fmt.Errorf("login attempt to %s failed with status: %s: %w", url, resp.Status, ErrUnauthorized)
	}
	return fmt.Errorf("login attempt to %s failed: %w", url, ErrUnauthorized)
}

// registryError explains the registry errors a user can act on.
func registryError(op, ref string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%s %s: %w: the registry speaks plain HTTP, which vxnet uses only for registries listed with --insecure-registry (%v)", op, ref, ErrInsecureRegistry, err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%s %s: manifest unknown or repository does not exist (%v): %w", op, ref, err, ErrNotFound)
	case strings.Contains(msg, "401 Unauthorized") || strings.Contains(msg, "authorization") || strings.Contains(msg, "basic auth"):
		return fmt.Errorf("%s access denied for %s, repository does not exist or may require 'docker login': %v: %w", op, ref, err, ErrUnauthorized)
	}
	return fmt.Errorf("%s %s: %w", op, ref, err)
}

// ErrUnauthorized: the registry refused the credentials (or their absence).
var ErrUnauthorized = errors.New("unauthorized")

// Progress receives pull progress: a layer's short ID and its status
// (Docker's "Pulling fs layer", "Pull complete").
type Progress func(id, status string)

// Pull fetches ref from its registry, unpacks it into the snapshotter and
// records it in the image store under ref's familiar name ("busybox:latest",
// "reg.example:5000/app:v1"; a digest reference adds it untagged).
// upToDate reports that the name already named this image. progress may
// be nil.
func (r *Containerd) Pull(ctx context.Context, ref string, auth RegistryAuth, progress Progress) (img image.Image, upToDate bool, err error) {
	if progress == nil {
		progress = func(string, string) {}
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return image.Image{}, false, fmt.Errorf("invalid reference format: %v: %w", err, ErrInvalid)
	}
	if r.opts.Images == nil {
		return image.Image{}, false, fmt.Errorf("pull %s: no image store: %w", ref, ErrInvalid)
	}
	ctx = r.ctx(ctx)
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return image.Image{}, false, err
	}
	defer done(context.WithoutCancel(ctx))
	// containerd runs the handler from several goroutines.
	var mu sync.Mutex
	var layers []string
	cimg, err := r.client.Pull(ctx, named.String(),
		containerd.WithResolver(r.resolver(auth)),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(Snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()),
		containerd.WithImageHandler(images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if images.IsLayerType(d.MediaType) {
				id := d.Digest.Encoded()[:12]
				mu.Lock()
				defer mu.Unlock()
				layers = append(layers, id)
				progress(id, "Pulling fs layer")
			}
			return nil, nil
		})))
	if err != nil {
		return image.Image{}, false, registryError("pull", reference.FamiliarString(named), err)
	}
	for _, id := range layers {
		progress(id, "Pull complete")
	}
	vimg, err := r.describe(ctx, cimg)
	if err != nil {
		return image.Image{}, false, fmt.Errorf("pull %s: %w", ref, err)
	}
	vimg.RepoDigests = []string{reference.FamiliarName(named) + "@" + cimg.Target().Digest.String()}
	if err := r.keep(ctx, vimg.ID, cimg.Target()); err != nil {
		return image.Image{}, false, fmt.Errorf("pull %s: %w", ref, err)
	}
	r.client.ImageService().Delete(ctx, named.String())
	name := ""
	if _, tagged := named.(reference.Tagged); tagged {
		name = reference.FamiliarString(named)
	}
	if old, err := r.opts.Images.Get(name); name != "" && err == nil && old.ID == vimg.ID {
		upToDate = true
	}
	r.log.Info("image pulled", "ref", named.String(), "id", vimg.ID)
	img, err = r.opts.Images.Add(name, vimg)
	return img, upToDate, err
}

// describe reads an image's config into vxnet's image metadata.
func (r *Containerd) describe(ctx context.Context, cimg containerd.Image) (image.Image, error) {
	cfgDesc, err := cimg.Config(ctx)
	if err != nil {
		return image.Image{}, fmt.Errorf("image config: %w", err)
	}
	b, err := content.ReadBlob(ctx, r.client.ContentStore(), cfgDesc)
	if err != nil {
		return image.Image{}, fmt.Errorf("image config: %w", err)
	}
	var oci ocispec.Image
	if err := json.Unmarshal(b, &oci); err != nil {
		return image.Image{}, fmt.Errorf("image config: %w", err)
	}
	size, _ := cimg.Size(ctx)
	t := cimg.Target()
	vimg := image.Image{
		ID:     cfgDesc.Digest.String(),
		Size:   size,
		Target: &image.Target{MediaType: t.MediaType, Digest: t.Digest.String(), Size: t.Size},
		Config: image.Config{
			Cmd: oci.Config.Cmd, Entrypoint: oci.Config.Entrypoint, Env: oci.Config.Env,
			WorkingDir: oci.Config.WorkingDir, User: oci.Config.User, Labels: oci.Config.Labels,
			ExposedPorts: oci.Config.ExposedPorts, Volumes: oci.Config.Volumes,
		},
	}
	if oci.Created != nil {
		vimg.Created = oci.Created.UTC()
	}
	for _, d := range oci.RootFS.DiffIDs {
		vimg.Layers = append(vimg.Layers, d.String())
	}
	for _, h := range oci.History {
		e := image.History{CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if h.Created != nil {
			e.Created = h.Created.UTC()
		}
		vimg.History = append(vimg.History, e)
	}
	return vimg, nil
}

// keep makes (or moves) the containerd record named id point at target.
func (r *Containerd) keep(ctx context.Context, id string, target ocispec.Descriptor) error {
	rec := images.Image{Name: id, Target: target, Labels: map[string]string{labelImageID: id}}
	is := r.client.ImageService()
	if _, err := is.Create(ctx, rec); errdefs.IsAlreadyExists(err) {
		_, err = is.Update(ctx, rec, "target", "labels")
		return err
	} else if err != nil {
		return err
	}
	return nil
}

// Push pushes the image named ref to its registry (ref's registry and
// repository) and returns the pushed manifest's digest and size.
func (r *Containerd) Push(ctx context.Context, ref string, auth RegistryAuth) (string, int64, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", 0, fmt.Errorf("invalid reference format: %v: %w", err, ErrInvalid)
	}
	if r.opts.Images == nil {
		return "", 0, fmt.Errorf("push %s: no image store: %w", ref, ErrInvalid)
	}
	vimg, err := r.opts.Images.Get(reference.FamiliarString(named))
	if err != nil {
		return "", 0, err
	}
	ctx = r.ctx(ctx)
	cimg, err := r.ensureImage(ctx, vimg)
	if err != nil {
		return "", 0, fmt.Errorf("push %s: %w", ref, err)
	}
	desc := cimg.Target()
	if err := r.client.Push(ctx, named.String(), desc,
		containerd.WithResolver(r.resolver(auth)),
		containerd.WithPlatformMatcher(platforms.Default())); err != nil {
		return "", 0, registryError("push", reference.FamiliarString(named), err)
	}
	vimg.RepoDigests = []string{reference.FamiliarName(named) + "@" + desc.Digest.String()}
	if vimg.Target != nil {
		r.opts.Images.Add("", vimg)
	}
	r.log.Info("image pushed", "ref", named.String(), "digest", desc.Digest)
	return desc.Digest.String(), desc.Size, nil
}

// ForgetImage deletes containerd's records of the vxnet image id and runs
// containerd's garbage collection: its content and unpacked snapshots go
// unless a container's snapshot still needs them.
func (r *Containerd) ForgetImage(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	is := r.client.ImageService()
	recs, err := is.List(ctx, fmt.Sprintf(`labels."%s"==%s`, labelImageID, id))
	if err != nil {
		return fmt.Errorf("forget image %s: %w", id, err)
	}
	for i, rec := range recs {
		var opts []images.DeleteOpt
		if i == len(recs)-1 {
			// Collect the garbage now, as docker rmi frees the layers
			// before it answers.
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, rec.Name, opts...); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("forget image %s: %w", id, err)
		}
	}
	return nil
}

// Save writes the images refs name (names or IDs) as one tar in Docker's
// format (manifest.json and repositories, with an OCI layout alongside),
// as `docker save` does.
func (r *Containerd) Save(ctx context.Context, w io.Writer, refs []string) error {
	if r.opts.Images == nil {
		return fmt.Errorf("save: no image store: %w", ErrInvalid)
	}
	ctx = r.ctx(ctx)
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return err
	}
	defer done(context.WithoutCancel(ctx))
	opts := []archive.ExportOpt{archive.WithPlatform(platforms.Default())}
	for _, ref := range refs {
		vimg, err := r.opts.Images.Get(ref)
		if err != nil {
			return err
		}
		cimg, err := r.ensureImage(ctx, vimg)
		if err != nil {
			return fmt.Errorf("save %s: %w", ref, err)
		}
		// A name saves that name; an ID saves all the image's names.
		names := vimg.RepoTags
		if named, err := image.ParseReference(ref); err == nil && slices.Contains(vimg.RepoTags, named.String()) {
			names = []string{named.String()}
		}
		opts = append(opts, archive.WithManifest(cimg.Target(), names...))
	}
	return r.client.Export(ctx, w, opts...)
}

// Load imports a tar made by `docker save` (or an OCI layout tar) and
// records each image in the image store under its names. It returns the
// loaded images (with the names the tar gave them).
func (r *Containerd) Load(ctx context.Context, rd io.Reader) ([]image.Image, error) {
	if r.opts.Images == nil {
		return nil, fmt.Errorf("load: no image store: %w", ErrInvalid)
	}
	ctx = r.ctx(ctx)
	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return nil, err
	}
	defer done(context.WithoutCancel(ctx))
	prefix := fmt.Sprintf("vxnet-load-%d/", time.Now().UnixNano())
	recs, err := r.client.Import(ctx, rd,
		containerd.WithImportPlatform(platforms.Default()),
		containerd.WithDigestRef(func(d digest.Digest) string { return prefix + d.String() }))
	if err != nil {
		return nil, fmt.Errorf("load: %v: %w", err, ErrInvalid)
	}
	var out []image.Image
	for _, rec := range recs {
		cimg := containerd.NewImage(r.client, rec)
		vimg, err := r.describe(ctx, cimg)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		if err := cimg.Unpack(ctx, Snapshotter); err != nil {
			return nil, fmt.Errorf("load: unpack: %w", err)
		}
		if err := r.keep(ctx, vimg.ID, rec.Target); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		name := ""
		if !strings.HasPrefix(rec.Name, prefix) {
			if named, err := reference.ParseNormalizedNamed(rec.Name); err == nil {
				name = reference.FamiliarString(reference.TagNameOnly(named))
			}
		}
		if rec.Name != vimg.ID {
			r.client.ImageService().Delete(ctx, rec.Name)
		}
		added, err := r.opts.Images.Add(name, vimg)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		added.RepoTags = nil
		if name != "" {
			added.RepoTags = []string{name}
		}
		out = append(out, added)
	}
	return out, nil
}
