//go:build unix

package opcua

import (
	"os"
	"syscall"
)

// fileID is a file's device and inode: a file renamed over another has the same
// path and maybe the same size and time, but not the same inode.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}
