//go:build !linux

package dataflow

import "errors"

// watchNewParts needs inotify (Linux).
func watchNewParts(dirs []string, want func(name string) bool, found func()) (func(), error) {
	return nil, errors.New("watching data directories needs Linux")
}
