// Package sparkplugpb is the Go code generated from sparkplug_b.proto, the
// Sparkplug B payload schema of the Eclipse Sparkplug 3.0.0 specification
// (proto2, package org.eclipse.tahu.protobuf). Regenerate it with `make proto`.
//
// Most code should not build these messages by hand: package
// github.com/edgegate/edgegate/protocols/sparkplug decodes a payload into typed
// metrics and encodes commands.
package sparkplugpb
