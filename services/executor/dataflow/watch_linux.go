package dataflow

import (
	"bytes"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// watchNewParts calls found (once) when a directory matching want is created in, or renamed
// into, one of dirs. It waits on inotify in a thread of its own, blocked in the kernel, so that
// found runs within microseconds of the rename, whatever the Go scheduler is doing.
func watchNewParts(dirs []string, want func(name string) bool, found func()) (func(), error) {
	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	for _, dir := range dirs {
		if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_MOVED_TO|syscall.IN_CREATE); err != nil {
			_ = syscall.Close(fd)
			return nil, fmt.Errorf("inotify %s: %w", dir, err)
		}
	}
	var stopped atomic.Bool
	go func() {
		runtime.LockOSThread()
		defer func() { _ = syscall.Close(fd) }()
		buf := make([]byte, 64<<10)
		for !stopped.Load() {
			var set syscall.FdSet
			set.Bits[fd/64] |= 1 << (uint(fd) % 64)
			tv := syscall.Timeval{Usec: 100_000} // then look at stopped again
			if n, err := syscall.Select(fd+1, &set, nil, nil, &tv); err != nil || n == 0 {
				continue
			}
			n, err := syscall.Read(fd, buf)
			if err != nil || n <= 0 {
				continue
			}
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := buf[off+syscall.SizeofInotifyEvent : off+syscall.SizeofInotifyEvent+int(ev.Len)]
				off += syscall.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&syscall.IN_ISDIR != 0 && want(string(bytes.TrimRight(name, "\x00"))) {
					found()
					return
				}
			}
		}
	}()
	return func() { stopped.Store(true) }, nil
}
