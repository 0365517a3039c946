package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/bridge/pbconv"
	"github.com/edgegate/edgegate/northbound"
)

// The northbound section measures a northbound link (package northbound, in
// this process) draining a durable backlog of a million messages (--quick:
// 20,000) to mosquitto, format json at QoS 1 with the default window, until the
// broker acknowledged the last. The peer is paho publishing the same JSON
// payloads from memory with the same window: the ceiling the link's own work
// (reading the log, encoding, tracking the position) is measured against.

// northboundWindow is mqtt.max_in_flight in the measurement (the default).
const northboundWindow = 256

func (e *env) northboundSection(ctx context.Context) {
	if e.mosquitto == "" {
		e.fail("northbound", errNoPeer)
		return
	}
	backlog := 1_000_000
	if e.quick {
		backlog = 20_000
	}
	rate, err := e.northboundDrain(ctx, backlog)
	if err != nil {
		e.fail("northbound drain", err)
		return
	}
	peer, err := e.pahoPublish(ctx, backlog)
	if err != nil {
		e.fail("northbound peer", err)
	}
	e.rows = append(e.rows, rateRow(fmt.Sprintf("northbound drain msg/s of a %s-message backlog to mosquitto, QoS 1, %d in flight",
		fmtCount(float64(backlog)), northboundWindow), rate, peer, "paho QoS 1 from memory"))
}

// northboundDrain fills a durable log through a hub while no link runs, then
// times the drain.
func (e *env) northboundDrain(ctx context.Context, n int) (float64, error) {
	b, err := e.startMosquitto(ctx, brokerSetup{})
	if err != nil {
		return 0, err
	}
	defer b.stop()
	dir := filepath.Join(e.tmp, "northbound-drain")
	defer os.RemoveAll(dir)
	j, err := journal.Open(filepath.Join(dir, "journal"), journal.Options{Sync: journal.SyncBatch, MaxBytes: 8 << 30})
	if err != nil {
		return 0, err
	}
	defer j.Close()
	hub := bridge.NewHub(bridge.HubConfig{Journal: j, FirstSequence: j.NextSequence()}, nil)
	defer hub.Close()
	in := hub.Ingest(bridge.ProtocolMQTT)
	for left := n; left > 0; left -= 1000 {
		batch := make([]*bridge.Message, min(left, 1000))
		for i := range batch {
			m := benchMessage(0)
			m.Sequence, m.Protocol, m.GatewayTime = 0, 0, time.Time{}
			batch[i] = m
		}
		if err := in.Publish(ctx, batch...); err != nil {
			return 0, err
		}
	}
	last := hub.LastSequence()
	l, err := northbound.New(northbound.Options{
		Config: &northbound.Config{Name: "bench", MQTT: &northbound.MQTT{URL: "tcp://" + b.mqttAddr, MaxInFlight: northboundWindow,
			ReconnectMin: 50 * time.Millisecond, ReconnectMax: 500 * time.Millisecond}},
		GatewayID: "bench", Hub: hub, Log: j, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(lctx)
	}()
	defer func() { cancel(); <-done }()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.Acked() < last {
		if time.Since(start) > 30*time.Minute {
			return 0, fmt.Errorf("acknowledged %d of %d after 30 minutes (last error: %s)", l.Acked(), last, l.Status().LastError)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-t.C:
		}
	}
	took := time.Since(start).Seconds()
	e.logf("northbound drain: %d messages in %.2fs (%.0f msg/s), %d reconnects", n, took, float64(n)/took, l.Status().Reconnects)
	return float64(n) / took, nil
}

// pahoPublish publishes n JSON messages from memory at QoS 1 with the same
// window, and returns messages acknowledged per second.
func (e *env) pahoPublish(ctx context.Context, n int) (float64, error) {
	b, err := e.startMosquitto(ctx, brokerSetup{})
	if err != nil {
		return 0, err
	}
	defer b.stop()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.mqttAddr).SetClientID("bench-peer").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return 0, fmt.Errorf("connecting: %v", tok.Error())
	}
	defer c.Disconnect(100)
	m := benchMessage(1)
	window := make(chan paho.Token, northboundWindow)
	errc := make(chan error, 1)
	go func() {
		for tok := range window {
			if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
				errc <- errors.Join(errors.New("no PUBACK"), tok.Error())
				for range window {
				}
				return
			}
		}
		errc <- nil
	}()
	start := time.Now()
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		m.Sequence = uint64(i + 1)
		payload, err := pbconv.AppendJSON(nil, m)
		if err != nil {
			close(window)
			return 0, err
		}
		window <- c.Publish("edgegate/bench/fryer-0042/oil_temp", 1, false, payload)
	}
	close(window)
	if err := <-errc; err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	rate := float64(n) / time.Since(start).Seconds()
	e.logf("paho QoS 1 publish: %d messages, %.0f msg/s", n, rate)
	return rate, nil
}
