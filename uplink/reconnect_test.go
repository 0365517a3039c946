package uplink

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := (&NATS{ReconnectMin: 100 * time.Millisecond, ReconnectMax: 1600 * time.Millisecond}).reconnect()
	for n := 1; n <= 10; n++ {
		want := min(100*time.Millisecond<<(n-1), 1600*time.Millisecond)
		if b := p.Base(n); b != want {
			t.Fatalf("failure %d: base %v, want %v", n, b, want)
		}
		for range 50 {
			if d := p.Delay(n); d < want/2 || d > want {
				t.Fatalf("failure %d: %v not in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
