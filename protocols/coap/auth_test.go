package coap

import (
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	egtls "github.com/edgegate/edgegate/tls"
)

// TestListenerAuth: an identity writes the device named like it (a SPIFFE ID by
// its last segment, as MQTT certificate logins do), or what its clients entry
// lists; nothing without an identity on a listener that authenticates.
func TestListenerAuth(t *testing.T) {
	a := newListenerAuth(ListenerConfig{TLS: &egtls.Files{ClientCAFile: "ca.crt"},
		Clients: []ClientConfig{{Identity: "spiffe://site/plant-gw", Devices: []string{"plant-?"}}}})
	for _, c := range []struct {
		identity, device string
		want             codes.Code
	}{
		{"meter-3", "meter-3", 0},
		{"meter-3", "meter-4", codes.Forbidden},
		{"spiffe://site/devices/fryer-1", "fryer-1", 0},
		{"spiffe://site/devices/fryer-1", "fryer-2", codes.Forbidden},
		{"spiffe://site/plant-gw", "plant-a", 0},
		{"spiffe://site/plant-gw", "plant-gw", codes.Forbidden},
		{"", "meter-3", codes.Unauthorized},
	} {
		if got := a.check(c.identity, c.device); got != c.want {
			t.Errorf("%q writes %q: %v, want %v", c.identity, c.device, got, c.want)
		}
	}
	open := newListenerAuth(ListenerConfig{})
	if got := open.check("", "anything"); got != 0 {
		t.Errorf("a listener that does not authenticate refused: %v", got)
	}
}
