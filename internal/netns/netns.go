// Package netns is vxnet's one idiom for network namespaces: create a new
// namespace pinned by a bind mount at a path we own, run a function inside a
// namespace on a locked OS thread, open namespace-bound netlink handles, and
// delete a pinned namespace. Deleting what is not there is success.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Create makes a new network namespace and pins it at path with a bind
// mount. If path already holds a namespace it is left as it is.
func Create(path string) error {
	if IsPinned(path) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("netns: create %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("netns: create %s: %w", path, err)
	}
	if f != nil {
		f.Close()
	}
	errc := make(chan error, 1)
	// A fresh thread enters the new namespace and is never returned to the
	// pool: the goroutine exits with the thread still locked, so Go kills it.
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("netns: pin %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	// Bring loopback up inside.
	return Do(path, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	})
}

// IsPinned reports whether path is a bind-mounted namespace file.
func IsPinned(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Delete unmounts and removes a pinned namespace. Missing is success.
func Delete(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns: remove %s: %w", path, err)
	}
	return nil
}

// Do runs fn with the calling goroutine's thread inside the namespace at
// path. If the thread cannot be moved back, it is not unlocked, so Go
// retires it instead of reusing a thread in the wrong namespace.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns: get current: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netns: enter %s: %w", path, err)
			runtime.UnlockOSThread()
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: restore: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Handle returns a netlink handle bound to the namespace at path. The
// caller closes it.
func Handle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netns: handle %s: %w", path, err)
	}
	return h, nil
}

// HandleFd returns a netns.NsHandle for the namespace at path (for
// netlink.LinkSetNsFd). The caller closes it.
func HandleFd(path string) (netns.NsHandle, error) {
	return netns.GetFromPath(path)
}
