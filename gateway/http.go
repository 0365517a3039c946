package gateway

import (
	"encoding/json"
	"github.com/edgegate/edgegate/northbound"
	"net/http"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// httpServer serves liveness, readiness, metrics and a JSON status page.
func (g *Gateway) httpServer() (*http.Server, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Liveness: the process answers. Readiness is separate, so that a gateway
		// waiting for its listeners is not restarted.
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		// A gateway whose durable log cannot write acknowledges nothing a device
		// sends: it is not ready until a write succeeds again. The reason (a path,
		// an errno) goes to the log and edgegate_journal_unavailable, not to an
		// unauthenticated probe.
		if g.journal != nil && g.journal.Err() != nil {
			http.Error(w, "not ready: durable log unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{
		// Bound concurrent scrapes: a scrape walks every device's series.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /status", g.serveStatus)
	// The status page for people (status.go): `/`, its assets, and its event stream.
	newStatusServer(g).routes(mux)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	tc, err := g.httpTLS(g.config()) // tls.go: a certificate that follows its files
	if err != nil {
		return nil, err
	}
	srv.TLSConfig = tc
	return srv, nil
}

type statusDevice struct {
	ID        string    `json:"id"`
	Protocol  string    `json:"protocol"`
	State     string    `json:"state"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Messages  uint64    `json:"messages"`
	Errors    uint64    `json:"errors"`
	Writes    uint64    `json:"writes"`
	Points    int       `json:"points"`
}

type statusPage struct {
	ID           string         `json:"id"`
	Version      string         `json:"version"`
	Ready        bool           `json:"ready"`
	Uptime       string         `json:"uptime"`
	Protocols    []string       `json:"protocols"`
	LastSequence uint64         `json:"last_sequence"`
	Devices      []statusDevice `json:"devices"`
	Uplink       *uplinkStatus  `json:"uplink,omitempty"`
	// Northbound are the MQTT links to external brokers (northbound.go).
	Northbound []northbound.Status `json:"northbound,omitempty"`
}

func (g *Gateway) serveStatus(w http.ResponseWriter, r *http.Request) {
	p := statusPage{
		ID:           g.config().Gateway.ID,
		Version:      Version,
		Ready:        g.ready.Load(),
		Uptime:       time.Since(g.started).Round(time.Second).String(),
		LastSequence: g.hub.LastSequence(),
		Protocols:    []string{},
		Devices:      []statusDevice{},
		Uplink:       g.uplinkStatusPtr(),
		Northbound:   g.northboundStatus(),
	}
	for _, a := range g.adapters.all() {
		p.Protocols = append(p.Protocols, a.name)
	}
	for _, d := range g.hub.Devices(nil) {
		p.Devices = append(p.Devices, statusDevice{
			ID: d.ID, Protocol: d.Protocol.String(), State: stateName(d.State),
			LastSeen: d.LastSeen, LastError: d.LastError,
			Messages: d.Messages, Errors: d.Errors, Writes: d.Writes, Points: len(d.Points),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(p)
}

func stateName(s bridge.DeviceState) string { return s.String() }
