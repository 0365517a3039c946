package gateway

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/edgegate/edgegate/bridge"
)

// FuzzFilterFromQuery: the status page's filter comes from any browser. Whatever
// the query, filterFromQuery does not panic, and a filter it accepts matches
// without panicking too.
func FuzzFilterFromQuery(f *testing.F) {
	for _, q := range []string{"", "device=fryer-*", "device=[&point=x", "protocol=zigbee", "protocol=mqtt&protocol=modbus&point=%5B", "device=%00&point=\\", "device=a&device=b&device=[a-"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, q string) {
		r := &http.Request{URL: &url.URL{RawQuery: q}}
		m, err := filterFromQuery(r)
		if err != nil {
			return
		}
		m.Match(&bridge.Message{Device: "fryer-1", Point: "oil_temp", Protocol: bridge.ProtocolMQTT})
	})
}
