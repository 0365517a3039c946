//go:build wasip1

package main

import "unsafe"

// The ABI (docs/functions.md): the gateway calls alloc for a buffer of the batch's
// size, writes the batch there, and calls process with it. process returns where
// its output is, packed as ptr<<32 | len (0: no output). Both buffers belong to the
// module and stay valid until the next call; the gateway never calls an instance
// from two goroutines at once.

var (
	detector = NewDetector()
	in       []byte
)

//go:wasmexport alloc
func alloc(size uint32) uint32 {
	if uint32(cap(in)) < size {
		in = make([]byte, size)
	}
	in = in[:size]
	return addr(in)
}

//go:wasmexport process
func process(ptr, size uint32) uint64 {
	if ptr != addr(in) || size > uint32(len(in)) {
		panic("process: not the buffer alloc returned") // a trap: the gateway counts the batch as failed
	}
	out, err := detector.Process(in[:size])
	if err != nil {
		panic(err)
	}
	if len(out) == 0 {
		return 0
	}
	return uint64(addr(out))<<32 | uint64(len(out))
}

func addr(b []byte) uint32 {
	if cap(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// main is not called: the module is a WASI reactor (-buildmode=c-shared), whose
// _initialize starts the Go runtime and returns.
func main() {}
