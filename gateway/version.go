package gateway

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Commit is the source revision the binary was built from, set at build time with
// -ldflags "-X github.com/edgegate/edgegate/gateway.Commit=..." (make build and
// the Dockerfile do). When it is not set, the revision Go recorded in the binary
// (when built inside a git checkout without -buildvcs=false) is used instead.
var Commit = ""

// BuildCommit is Commit, or the VCS revision recorded by the Go toolchain, or
// "unknown".
func BuildCommit() string {
	if Commit != "" {
		return Commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			return rev + dirty
		}
	}
	return "unknown"
}

// VersionString is the one line `edgegate version` prints: the version, the
// commit, and the Go toolchain and platform the binary was built for.
func VersionString() string {
	return fmt.Sprintf("edgegate %s (commit %s, %s %s/%s)", Version, BuildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
