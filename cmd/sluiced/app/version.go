package app

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit identify the build. make build and make image set them
// (-ldflags "-X github.com/sluicehq/sluice/cmd/sluiced/app.Version=... -X ...app.Commit=...");
// a plain go build leaves "dev" and takes the commit from the build information when Go
// recorded it (it does not in workspace mode).
var (
	Version = "dev"
	Commit  = ""
)

// VersionString is what `sluiced -version` prints: the release, the commit, the Go version and
// the platform.
func VersionString() string {
	commit := Commit
	if info, ok := debug.ReadBuildInfo(); ok && commit == "" {
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			commit = rev + dirty
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("sluiced %s (commit %s, %s, %s/%s)", Version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
