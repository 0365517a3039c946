package grpcapi

import (
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// FuzzPageToken: a page_token comes from the client (issue 19.9). Whatever it is,
// decoding never panics and yields names within the bounds of real names; a token
// the gateway issued decodes to the point it was issued for.
func FuzzPageToken(f *testing.F) {
	f.Add(encodePageToken(pointKey{"fryer-1", "oil_temp"}), "fryer-1", "oil_temp")
	f.Add("", "a", "b")
	f.Add("AQ", "d", "p")
	f.Add("AYCAgICAgICAgAE", "x", "y")
	f.Fuzz(func(t *testing.T, token, device, point string) {
		if k, err := decodePageToken(token); err == nil {
			if k.device == "" || len(k.device) > bridge.MaxNameLen || k.point == "" || len(k.point) > bridge.MaxNameLen {
				t.Fatalf("token %q decoded to out-of-bounds names %q/%q", token, k.device, k.point)
			}
		}
		if device == "" || point == "" || len(device) > bridge.MaxNameLen || len(point) > bridge.MaxNameLen {
			return
		}
		want := pointKey{device, point}
		got, err := decodePageToken(encodePageToken(want))
		if err != nil || got != want {
			t.Fatalf("round trip of %+v = %+v, %v", want, got, err)
		}
	})
}
