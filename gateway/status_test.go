package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// statusHTTP is the status tests' client; closeIdle closes its kept-alive
// connections at the end of a test (goleak would find their goroutines).
var statusHTTP = &http.Client{Transport: &http.Transport{}}

func closeIdle(t *testing.T) { t.Cleanup(statusHTTP.CloseIdleConnections) }

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	name string
	data string
}

// openEvents opens the status page's event stream and returns its events as they
// come. The stream ends with ctx.
func openEvents(t *testing.T, ctx context.Context, base, query string) (<-chan sseEvent, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+base+"/status/events"+query, nil)
	resp, err := statusHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("events: %s: %s", resp.Status, b)
	}
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			case line == "" && ev.name != "":
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	return ch, resp
}

type snap struct {
	ID      string `json:"id"`
	Devices []struct {
		ID       string  `json:"id"`
		State    string  `json:"state"`
		Messages uint64  `json:"messages"`
		Rate     float64 `json:"rate"`
	} `json:"devices"`
	Latest []struct {
		Device, Point, Value string
	} `json:"latest"`
	Subscribers []struct {
		Name string `json:"name"`
		Lag  uint64 `json:"lag"`
	} `json:"subscribers"`
	Dropped uint64 `json:"dropped"`
}

// next returns the next event of that name, skipping others.
func next(t *testing.T, ctx context.Context, ch <-chan sseEvent, name string) sseEvent {
	t.Helper()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended waiting for %s", name)
			}
			if ev.name == name {
				return ev
			}
		case <-ctx.Done():
			t.Fatalf("timed out waiting for a %s event", name)
		}
	}
}

func TestStatusPageEvents(t *testing.T) {
	closeIdle(t) // after the gateway stops: cleanups run last first
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The page and its assets come from the binary, with a strict CSP.
	for path, want := range map[string]string{"/": "<title>edgegate</title>", "/static/app.js": "EventSource", "/static/style.css": "--bg"} {
		resp, err := statusHTTP.Get("http://" + r.http + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %s, %d bytes", path, resp.Status, len(b))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	// Read-only: nothing but GET, and nothing but the page under /.
	for _, c := range []struct {
		method, path string
		code         int
	}{{"GET", "/nope", 404}, {"POST", "/", 405}, {"POST", "/status/events", 405}, {"PUT", "/static/app.js", 405}} {
		req, _ := http.NewRequest(c.method, "http://"+r.http+c.path, nil)
		resp, err := statusHTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("%s %s: %s, want %d", c.method, c.path, resp.Status, c.code)
		}
	}

	all, _ := openEvents(t, ctx, r.http, "")
	filtered, _ := openEvents(t, ctx, r.http, "?device=fryer-*&point=oil_temp&protocol=mqtt")
	var s snap
	if err := json.Unmarshal([]byte(next(t, ctx, all, "snapshot").data), &s); err != nil {
		t.Fatal(err)
	}
	if s.ID != "test-gw" || len(s.Devices) != 1 || s.Devices[0].ID != "fryer-1" {
		t.Errorf("first snapshot %+v", s)
	}
	next(t, ctx, filtered, "snapshot")

	dev := mqttClient(t, r.mqtt, "fryer-1")
	pub(t, dev, "devices/fryer-1/basket", 1, `"up"`)
	pub(t, dev, "devices/fryer-1/oil_temp", 1, "181.5")
	var m struct{ Device, Point, Value, Kind, Unit, Priority string }
	json.Unmarshal([]byte(next(t, ctx, all, "message").data), &m)
	if m.Point != "basket" || m.Value != "up" || m.Kind != "string" {
		t.Errorf("first message %+v", m)
	}
	json.Unmarshal([]byte(next(t, ctx, filtered, "message").data), &m)
	if m.Device != "fryer-1" || m.Point != "oil_temp" || m.Value != "181.5" || m.Unit != "°C" || m.Priority != "critical" {
		t.Errorf("filtered stream's first message %+v", m)
	}
	// A later snapshot has the latest values that changed, the device's new state
	// and the subscribers (both streams are hub subscriptions).
	for {
		json.Unmarshal([]byte(next(t, ctx, all, "snapshot").data), &s)
		if len(s.Latest) > 0 {
			break
		}
	}
	points := map[string]string{}
	for _, l := range s.Latest {
		points[l.Point] = l.Value
	}
	if points["oil_temp"] != "181.5" || points["basket"] != "up" {
		t.Errorf("latest %+v", s.Latest)
	}
	if s.Devices[0].State != "connected" || s.Devices[0].Messages != 2 {
		t.Errorf("device %+v", s.Devices[0])
	}
	if n := len(s.Subscribers); n != 2 || !strings.HasPrefix(s.Subscribers[0].Name, "status page @ ") {
		t.Errorf("subscribers %+v", s.Subscribers)
	}

	// A bad filter is refused with the reason.
	resp, err := statusHTTP.Get("http://" + r.http + "/status/events?protocol=zigbee")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "zigbee") {
		t.Errorf("bad filter: %s %s", resp.Status, b)
	}
}

// TestStatusStreamsBounded: streams beyond the limit are refused with 503, and a
// slot frees when a stream ends.
func TestStatusStreamsBounded(t *testing.T) {
	closeIdle(t) // after the gateway stops: cleanups run last first
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const max = 16 // maxStatusStreams
	var cancels []context.CancelFunc
	for i := range max {
		sctx, scancel := context.WithCancel(ctx)
		cancels = append(cancels, scancel)
		ch, _ := openEvents(t, sctx, r.http, "")
		if i == 0 {
			next(t, ctx, ch, "snapshot")
		}
	}
	resp, err := statusHTTP.Get("http://" + r.http + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d: %s", max+1, resp.Status)
	}
	cancels[0]()
	// The slot is free once the server noticed; wait for it, never sleep. Each
	// attempt refused meanwhile is counted too.
	refused := 1
	deadline := time.Now().Add(10 * time.Second)
	for {
		sctx, scancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(sctx, "GET", "http://"+r.http+"/status/events", nil)
		resp, err := statusHTTP.Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			scancel()
			break
		}
		if err == nil {
			if resp.StatusCode == http.StatusServiceUnavailable {
				refused++
			}
			resp.Body.Close()
		}
		scancel()
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed stream was not freed")
		}
		<-time.After(20 * time.Millisecond) // paces the polling; the condition is the status code
	}
	for _, c := range cancels {
		c()
	}
	metrics, _ := statusHTTP.Get("http://" + r.http + "/metrics")
	b, _ := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if want := fmt.Sprintf("edgegate_status_streams_refused_total %d\n", refused); !strings.Contains(string(b), want) {
		t.Errorf("refused streams not counted: want %q", want)
	}
}

// TestStatusStreamRate: a burst larger than the stream's rate is cut, and what was
// cut is counted in the next snapshot.
func TestStatusStreamRate(t *testing.T) {
	closeIdle(t) // after the gateway stops: cleanups run last first
	r := startGateway(t, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch, _ := openEvents(t, ctx, r.http, "?device=burst")
	next(t, ctx, ch, "snapshot")
	dev := mqttClient(t, r.mqtt, "burst")
	const n = 200
	payload := "{"
	for i := range n {
		if i > 0 {
			payload += ","
		}
		payload += fmt.Sprintf(`"p%d": %d`, i, i)
	}
	pub(t, dev, "devices/burst", 1, payload+"}") // one batch of n messages at once
	var s snap
	msgs := 0
	for s.Dropped == 0 {
		select {
		case ev := <-ch:
			switch ev.name {
			case "message":
				msgs++
			case "snapshot":
				json.Unmarshal([]byte(ev.data), &s)
			}
		case <-ctx.Done():
			t.Fatal("no drop counted")
		}
	}
	if msgs+int(s.Dropped) != n || msgs > 60 {
		t.Errorf("%d forwarded, %d dropped, of %d", msgs, s.Dropped, n)
	}
}
