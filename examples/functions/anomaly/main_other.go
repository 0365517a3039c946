//go:build !wasip1

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "anomaly is a WebAssembly module: make functions-example "+
		"(GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared) builds it, and edgegate runs it")
	os.Exit(2)
}
