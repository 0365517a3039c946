package tls

import (
	"errors"
	"testing"
)

func TestCheckListener(t *testing.T) {
	for _, c := range []struct {
		addr          string
		tls, insecure bool
		wantRefused   bool
	}{
		{"127.0.0.1:1883", false, false, false},
		{"127.9.9.9:1883", false, false, false},
		{"[::1]:1883", false, false, false},
		{"localhost:1883", false, false, false},
		{"unix:///run/edgegate/grpc.sock", false, false, false},
		{"0.0.0.0:1883", false, false, true},
		{":1883", false, false, true},
		{"[::]:1883", false, false, true},
		{"192.0.2.1:1883", false, false, true},
		{"0.0.0.0:1883", true, false, false},
		{"0.0.0.0:1883", false, true, false},
		{"garbage", false, false, true},
	} {
		err := CheckListener(c.addr, c.tls, c.insecure)
		if got := err != nil; got != c.wantRefused {
			t.Errorf("CheckListener(%q, tls=%v, insecure=%v) = %v, want refused=%v", c.addr, c.tls, c.insecure, err, c.wantRefused)
		}
		if err != nil && !errors.Is(err, ErrPlaintext) {
			t.Errorf("error %v does not wrap ErrPlaintext", err)
		}
		// The client side's rule is the same.
		err = CheckPeer(c.addr, c.tls, c.insecure)
		if got := err != nil; got != c.wantRefused || err != nil && !errors.Is(err, ErrPlaintextPeer) {
			t.Errorf("CheckPeer(%q, tls=%v, insecure=%v) = %v, want refused=%v", c.addr, c.tls, c.insecure, err, c.wantRefused)
		}
	}
}
