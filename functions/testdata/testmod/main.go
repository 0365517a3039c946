//go:build wasip1

// Command testmod is the functions package's test module: what it does with a
// batch depends on the first message's point.
//
//	loop    loops forever
//	grow    allocates until memory runs out
//	open    tries to open files and directories; emits open_result (a string:
//	        "denied: <errors>" or "opened <path>")
//	panic   panics (a trap, with a message on stderr)
//	error   reports an error in Output.error
//	write   asks to write the value to <device>/setpoint
//	other   emits a message for a device that is not in the batch
//	count   emits count: the messages this instance has seen
//	default emits <point>_seen with the same value for every message, and drops
//	        every message whose point is "drop"
package main

import (
	"os"
	"strings"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

var (
	in   []byte
	out  []byte
	seen int
	hold [][]byte
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
	out = out[:0]
	type msg struct {
		device, point string
		value         []byte // the encoded Value
	}
	var batch []msg
	b := in[:size]
	for len(b) > 0 {
		_, _, n := protowire.ConsumeTag(b)
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		b = b[n:]
		var m msg
		for len(v) > 0 {
			num, typ, n := protowire.ConsumeTag(v)
			v = v[n:]
			n = protowire.ConsumeFieldValue(num, typ, v)
			if typ == protowire.BytesType {
				f, _ := protowire.ConsumeBytes(v)
				switch num {
				case 2:
					m.device = string(f)
				case 3:
					m.point = string(f)
				case 5:
					m.value = f
				}
			}
			v = v[n:]
		}
		batch = append(batch, m)
	}
	seen += len(batch)
	if len(batch) == 0 {
		return 0
	}
	first := batch[0]
	switch first.point {
	case "loop":
		for {
		}
	case "grow":
		for {
			hold = append(hold, make([]byte, 1<<20))
		}
	case "open":
		var errs []string
		for _, p := range []string{"/etc/passwd", "/", ".", "testmod.wasm", "/proc/self/environ"} {
			f, err := os.Open(p)
			if err == nil {
				f.Close()
				emit(first.device, "open_result", stringValue("opened "+p))
				return result()
			}
			errs = append(errs, err.Error())
		}
		if _, err := os.ReadDir("/"); err == nil {
			emit(first.device, "open_result", stringValue("opened /"))
			return result()
		}
		if err := os.WriteFile("/tmp/testmod", []byte("x"), 0o600); err == nil {
			emit(first.device, "open_result", stringValue("wrote /tmp/testmod"))
			return result()
		}
		emit(first.device, "open_result", stringValue("denied: "+strings.Join(errs, "; ")))
	case "panic":
		panic("testmod: asked to panic")
	case "error":
		out = protowire.AppendTag(out, 4, protowire.BytesType)
		out = protowire.AppendString(out, "testmod: asked to fail")
	case "write":
		var w []byte
		w = protowire.AppendTag(w, 1, protowire.BytesType)
		w = protowire.AppendString(w, first.device)
		w = protowire.AppendTag(w, 2, protowire.BytesType)
		w = protowire.AppendString(w, "setpoint")
		w = protowire.AppendTag(w, 3, protowire.BytesType)
		w = protowire.AppendBytes(w, first.value)
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendBytes(out, w)
	case "other":
		emit("someone-else", "x", first.value)
	case "count":
		var v []byte
		v = protowire.AppendTag(v, 2, protowire.VarintType)
		v = protowire.AppendVarint(v, uint64(seen))
		emit(first.device, "count", v)
	default:
		var drops []byte
		for i, m := range batch {
			if m.point == "drop" {
				drops = protowire.AppendVarint(drops, uint64(i))
				continue
			}
			emit(m.device, m.point+"_seen", m.value)
		}
		if len(drops) > 0 {
			out = protowire.AppendTag(out, 3, protowire.BytesType)
			out = protowire.AppendBytes(out, drops)
		}
	}
	return result()
}

func stringValue(s string) []byte {
	v := protowire.AppendTag(nil, 5, protowire.BytesType)
	return protowire.AppendString(v, s)
}

func emit(device, point string, value []byte) {
	var m []byte
	m = protowire.AppendTag(m, 2, protowire.BytesType)
	m = protowire.AppendString(m, device)
	m = protowire.AppendTag(m, 3, protowire.BytesType)
	m = protowire.AppendString(m, point)
	m = protowire.AppendTag(m, 5, protowire.BytesType)
	m = protowire.AppendBytes(m, value)
	out = protowire.AppendTag(out, 1, protowire.BytesType)
	out = protowire.AppendBytes(out, m)
}

func result() uint64 {
	if len(out) == 0 {
		return 0
	}
	return uint64(addr(out))<<32 | uint64(len(out))
}

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

func main() {}
