package kitchen_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/edgegate/edgegate/client"
	"github.com/edgegate/edgegate/examples/kitchen-display/kitchen"
)

// FuzzParseOrder: an order string comes from a terminal on the network. Whatever
// it holds, ParseOrder does not panic, an accepted order has an id and items
// without surrounding space, and applying it keeps the board consistent.
func FuzzParseOrder(f *testing.F) {
	for _, s := range []string{"1042: 2x fries, 1x burger", "A-7:", ": x", "x:,,,", " 9 : a ,b ", "\x00:\xff", strings.Repeat("a,", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, items, err := kitchen.ParseOrder(s)
		if err != nil {
			return
		}
		if id == "" || id != strings.TrimSpace(id) {
			t.Fatalf("id %q", id)
		}
		for _, it := range items {
			if it == "" || it != strings.TrimSpace(it) || strings.Contains(it, ",") {
				t.Fatalf("item %q", it)
			}
		}
		if !utf8.ValidString(s) {
			return // the gateway delivers text as UTF-8 only
		}
		d := kitchen.New(kitchen.Config{MaxOrders: 2})
		now := time.Now()
		d.Apply(&client.Message{Sequence: 1, Device: "pos-1", Point: "order", Value: client.String(s), GatewayTime: now}, now)
		if o, ok := d.Board().Order(id); !ok || len(o.Items) != len(items) {
			t.Fatalf("order %q not on the board as parsed", id)
		}
		d.Apply(&client.Message{Sequence: 2, Device: "pos-1", Point: "served", Value: client.String(id)}, now)
		if len(d.Board().Orders) != 0 {
			t.Fatalf("order %q not served", id)
		}
	})
}
