package gateway_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"
)

// TestStatusHistory: a stream's first snapshot carries each numeric point's recent
// values from the hub's ring, oldest first, for the page's sparklines; points whose
// values are not numbers have none, and later snapshots carry no history.
func TestStatusHistory(t *testing.T) {
	closeIdle(t)
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dev := mqttClient(t, r.mqtt, "fryer-1")
	for _, v := range []string{"170", "171.5", "173"} {
		pub(t, dev, "devices/fryer-1/oil_temp", 1, v) // QoS 1: in the hub once acknowledged
	}
	pub(t, dev, "devices/fryer-1/basket", 1, `"up"`)
	pub(t, dev, "devices/fryer-1/count", 1, "7")

	type history struct {
		History []struct {
			Device, Point string
			Values        []float64
			Seq           uint64
		} `json:"history"`
	}
	ch, _ := openEvents(t, ctx, r.http, "")
	var h history
	if err := json.Unmarshal([]byte(next(t, ctx, ch, "snapshot").data), &h); err != nil {
		t.Fatal(err)
	}
	got := map[string][]float64{}
	for _, p := range h.History {
		if p.Device != "fryer-1" || p.Seq == 0 {
			t.Errorf("history entry %+v", p)
		}
		got[p.Point] = p.Values
	}
	if len(got) != 2 || !slices.Equal(got["oil_temp"], []float64{170, 171.5, 173}) || !slices.Equal(got["count"], []float64{7}) {
		t.Errorf("history %v, want oil_temp [170 171.5 173] and count [7] only", got)
	}
	h = history{}
	if err := json.Unmarshal([]byte(next(t, ctx, ch, "snapshot").data), &h); err != nil {
		t.Fatal(err)
	}
	if len(h.History) != 0 {
		t.Errorf("a later snapshot carries history %+v", h.History)
	}
}
