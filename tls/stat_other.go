//go:build !unix

package tls

import "os"

// fileID is unknown here; the path, size and time still show a change.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
