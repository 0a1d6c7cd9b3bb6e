package image

import (
	"fmt"
	"regexp"
	"strings"
)

// DefaultTag is the tag a reference without one gets.
const DefaultTag = "latest"

// Reference is a parsed image name: a repository and a tag.
type Reference struct {
	Repo string
	Tag  string
}

// String returns "repo:tag".
func (r Reference) String() string { return r.Repo + ":" + r.Tag }

// The grammar is the common subset of the distribution reference grammar:
// an optional registry host, then lowercase path components, then a tag.
// Digests are not supported (there is no registry to resolve them).
var (
	pathComponentRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	domainRe        = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$`)
	tagRe           = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
)

// ParseReference parses and normalises an image name such as "busybox",
// "busybox:1.36" or "registry.example:5000/team/app:v1". The Docker Hub
// prefixes "docker.io/" and "docker.io/library/" are dropped, so
// "docker.io/library/busybox" and "busybox" name the same image. Invalid
// names return an error wrapping ErrInvalid.
func ParseReference(s string) (Reference, error) {
	invalid := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("image: invalid reference format %q: %s: %w", s, why, ErrInvalid)
	}
	if s == "" {
		return invalid("empty name")
	}
	if len(s) > 255 {
		return invalid("name longer than 255 characters")
	}
	if strings.Contains(s, "@") {
		return invalid("digest references are not supported")
	}
	repo, tag := s, DefaultTag
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		repo, tag = s[:i], s[i+1:]
		if !tagRe.MatchString(tag) {
			return invalid("bad tag")
		}
	}
	parts := strings.Split(repo, "/")
	path := parts // the components that must be lowercase path components
	if len(parts) > 1 && (strings.ContainsAny(parts[0], ".:") || parts[0] == "localhost") {
		if !domainRe.MatchString(parts[0]) {
			return invalid("bad registry host")
		}
		if parts[0] == "docker.io" || parts[0] == "index.docker.io" {
			parts = parts[1:]
			if len(parts) == 2 && parts[0] == "library" {
				parts = parts[1:]
			}
			path = parts
		} else {
			path = parts[1:]
		}
	}
	for _, p := range path {
		if err := checkComponent(p); err != "" {
			return invalid(err)
		}
	}
	return Reference{Repo: strings.Join(parts, "/"), Tag: tag}, nil
}

func checkComponent(p string) string {
	if pathComponentRe.MatchString(p) {
		return ""
	}
	if strings.ToLower(p) != p && pathComponentRe.MatchString(strings.ToLower(p)) {
		return "repository name must be lowercase"
	}
	return "only [a-z0-9] separated by '.', '_', '__' or '-' are allowed in a repository name"
}
