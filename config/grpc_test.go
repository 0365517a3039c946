package config

import (
	"strings"
	"testing"
	"time"
)

// The grpc section's bounds: NaN or infinite budgets (issue 19.10), negative
// handshake_timeout or consumer_ttl are refused; the keys parse as durations.
func TestGRPCBounds(t *testing.T) {
	c, err := Parse([]byte("grpc: {handshake_timeout: 3s, consumer_ttl: 48h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPC.HandshakeTimeout != 3*time.Second || c.GRPC.ConsumerTTL != 48*time.Hour {
		t.Errorf("parsed %v, %v", c.GRPC.HandshakeTimeout, c.GRPC.ConsumerTTL)
	}
	for _, bad := range []string{
		"grpc: {subscriber_budget: {messages_per_second: .nan}}",
		"grpc: {budget: {bytes_per_second: .inf}}",
		"grpc: {handshake_timeout: -1s}",
		"grpc: {consumer_ttl: -1h}",
	} {
		if _, err := Parse([]byte(bad + "\n")); err == nil || !strings.Contains(err.Error(), "grpc:") {
			t.Errorf("%s: %v, want a grpc: error", bad, err)
		}
	}
}
