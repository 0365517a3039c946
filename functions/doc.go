// Package functions runs edge functions on the stream, between the protocol
// adapters and the hub: filters and derivations in CEL (cel.dev/cel-go),
// tumbling-window aggregates, and WebAssembly modules (github.com/tetratelabs/wazero,
// pure Go) that users build in any language with a WASI target. Because they run
// before the hub, what they add is a message like any other: it gets its own
// sequence, goes into the durable log with the batch it came from, and reaches
// subscribers, the uplink and the status page.
//
// The gateway wraps each adapter's sink with Pipeline.Sink. A batch runs through
// the functions in config order; a message a function adds goes through the
// functions after it (not before it, and never through itself), and a filter
// drops a message for the functions after it too. What comes out is published as
// one batch: the messages that passed, each followed by what was derived from it,
// then what WebAssembly functions added. Aggregates emit from Run's goroutine at
// the end of each window, through the functions after them, to the sink of the
// device's protocol. Pipeline.Swap replaces the function list atomically (config
// reload): every batch runs wholly through one list, none is lost, and functions
// whose config did not change keep their state.
//
// A function that fails on a message (a CEL error, a cost over the limit, a
// result of the wrong type, a module that traps, runs past its deadline or
// returns a malformed output) counts a failure and a dead letter and logs at a
// bounded rate; the message goes on unchanged. A failing filter therefore passes
// the message: losing readings to a broken expression cannot be undone, sending a
// few too many can. The pipeline never stops for a function.
//
// It does not order or deduplicate across adapters, join streams, keep state in
// CEL, or persist aggregate windows across restarts (an open window is lost; the
// next starts empty). docs/functions.md is the user's guide and the WebAssembly
// ABI.
//
// Config keys (the `functions:` list) and defaults:
//
//	name:        required, unique; the derived_from label of what the function adds
//	match:       {devices: [globs], points: [globs], labels: {k: v}}; empty matches all
//	cost_limit:  10000 (CEL cost units per evaluation; estimated at load and enforced)
//	derive:      {point, cel, unit: ""}
//	filter:      {cel}
//	aggregate:   {window (10ms to 168h), fn: avg|min|max|sum|count|last, point, unit: the readings'}
//	wasm:        {module, timeout: 100ms, memory_limit: 16MiB, instances: 1,
//	              max_batch: 256, allow_writes: false}
package functions
