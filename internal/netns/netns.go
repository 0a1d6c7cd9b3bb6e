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
	created := f != nil // only remove a mount point file we made ourselves
	if f != nil {
		f.Close()
	}
	errc := make(chan error, 1)
	// A locked thread unshares into the new namespace, pins it, and moves
	// back. Retiring the thread instead is not enough: when the goroutine
	// runs on the main thread, Go cannot kill it and wedges it in the new
	// namespace, which then is what /proc/self/ns/net shows. Only if the
	// way back fails is the thread left locked (and retired or wedged).
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netns: get current: %w", err)
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns: unshare: %w", err)
			runtime.UnlockOSThread()
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		merr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if merr != nil {
			merr = fmt.Errorf("netns: pin %s: %w", path, merr)
		}
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked.
			errc <- errors.Join(merr, fmt.Errorf("netns: restore: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	if err := <-errc; err != nil {
		if IsPinned(path) {
			return errors.Join(err, Delete(path))
		}
		if created {
			os.Remove(path)
		}
		return err
	}
	// Bring loopback up inside, with a handle bound to the new namespace.
	// A namespace we could not finish is not left pinned.
	if err := loUp(path); err != nil {
		return errors.Join(fmt.Errorf("netns: create %s: loopback up: %w", path, err), Delete(path))
	}
	return nil
}

func loUp(path string) error {
	h, err := Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	return h.LinkSetUp(lo)
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

// Do runs fn on a locked OS thread inside the namespace at path and waits
// for it. fn runs on a goroutine of its own: goroutines that fn starts do
// not run inside the namespace. If the thread cannot be moved back, it is
// not unlocked, so Go retires it instead of reusing a thread in the wrong
// namespace. A panic in fn is re-raised in the caller after the thread's
// namespace was dealt with.
func Do(path string, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("netns: open %s: %w", path, err)
	}
	defer target.Close()
	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	resc := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			// Still in the original namespace, but we do not know it is
			// the right one: retire the thread.
			resc <- result{err: fmt.Errorf("netns: get current: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			resc <- result{err: fmt.Errorf("netns: enter %s: %w", path, err)}
			return
		}
		var res result
		func() {
			defer func() {
				if v := recover(); v != nil {
					res.panicked, res.panicVal = true, v
				}
			}()
			res.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with the goroutine.
			res.err = errors.Join(res.err, fmt.Errorf("netns: restore: %w", err))
			resc <- res
			return
		}
		runtime.UnlockOSThread()
		resc <- res
	}()
	res := <-resc
	if res.panicked {
		panic(res.panicVal)
	}
	return res.err
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
