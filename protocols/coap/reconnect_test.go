package coap

import "testing"

// TestReconnectJitter: connection attempts keep their bounds and are jittered.
func TestReconnectJitter(t *testing.T) {
	if reconnect.Base(1) != reconnectMin || reconnect.Base(100) != reconnectMax {
		t.Fatalf("bounds %v..%v, want %v..%v", reconnect.Base(1), reconnect.Base(100), reconnectMin, reconnectMax)
	}
	seen := map[int64]bool{}
	for range 20 {
		d := reconnect.Delay(3)
		if d < reconnect.Base(3)/2 || d > reconnect.Base(3) {
			t.Fatalf("wait %v outside the upper half of %v", d, reconnect.Base(3))
		}
		seen[int64(d)] = true
	}
	if len(seen) < 2 {
		t.Error("20 waits were all the same: no jitter")
	}
}
