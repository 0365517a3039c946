package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// maxIdleConns bounds --connections.
const maxIdleConns = 100000

// memResult is one broker's resident memory before and after the idle connections.
type memResult struct {
	before, after uint64
	conns         int
}

func (m *memResult) perConn() float64 {
	return (float64(m.after) - float64(m.before)) / float64(m.conns)
}

func (e *env) memory(ctx context.Context) {
	var res [2]*memResult
	for i, kind := range []string{kindEdgegate, kindMosquitto} {
		if kind == kindMosquitto && e.mosquitto == "" {
			continue
		}
		r, err := e.measureMemory(ctx, kind)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.fail(fmt.Sprintf("memory, %s", kind), err)
			continue
		}
		e.logf("memory     %-9s RSS %s idle, %s with %d connections: %s per connection",
			kind, fmtBytes(float64(r.before)), fmtBytes(float64(r.after)), r.conns, fmtBytes(r.perConn()))
		res[i] = r
	}
	e.rows = append(e.rows, memRows(e.conns, res[0], res[1])...)
}

// measureMemory reads the broker's RSS once it has settled, opens the idle
// connections, lets it settle again and reads its RSS again.
func (e *env) measureMemory(ctx context.Context, kind string) (*memResult, error) {
	// The broker's own defaults, but room for the connections.
	b, err := e.startBroker(ctx, kind, brokerSetup{maxConnections: 2 * e.conns})
	if err != nil {
		return nil, err
	}
	defer b.stop()
	settle := 2 * time.Second
	if e.quick {
		settle = 300 * time.Millisecond
	}
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	before, err := b.proc.rss()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	conns, err := openIdle(ctx, b.mqttAddr, e.conns)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	e.logf("memory     %-9s %d connections open in %v", kind, len(conns), time.Since(start).Round(time.Millisecond))
	if err := sleepCtx(ctx, settle); err != nil {
		return nil, err
	}
	after, err := b.proc.rss()
	if err != nil {
		return nil, err
	}
	if b.proc.exitedEarly() {
		return nil, b.proc.exited()
	}
	return &memResult{before: before, after: after, conns: len(conns)}, nil
}

// idleWorkers bounds the connections being opened at once.
const idleWorkers = 64

// openIdle opens n MQTT connections that then say nothing: a raw CONNECT (MQTT
// 3.1.1, clean session, keepalive 0 so that the broker expects no pings) and its
// CONNACK. paho would do the same in many more goroutines and round trips.
func openIdle(ctx context.Context, addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(idleWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				c, err := connectIdle(ctx, addr, fmt.Sprintf("bench-idle-%d", i))
				if err != nil {
					cancel(fmt.Errorf("connection %d: %w", i, err))
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

// connectIdle opens one connection and completes the MQTT handshake.
func connectIdle(ctx context.Context, addr, clientID string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(connectPacket(clientID)); err != nil {
		c.Close()
		return nil, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		c.Close()
		return nil, fmt.Errorf("reading CONNACK: %w", err)
	}
	if err := checkConnack(ack); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// connectPacket is an MQTT 3.1.1 CONNECT: clean session, keepalive 0, no
// credentials. Client ids are short, so the remaining length fits in one byte.
func connectPacket(clientID string) []byte {
	rest := 10 + 2 + len(clientID)
	b := make([]byte, 0, 2+rest)
	b = append(b, 0x10, byte(rest))
	b = append(b, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 0)
	b = append(b, byte(len(clientID)>>8), byte(len(clientID)))
	return append(b, clientID...)
}

// checkConnack reads a CONNACK: type 2, length 2, flags, return code 0 (accepted).
func checkConnack(b [4]byte) error {
	if b[0] != 0x20 || b[1] != 2 {
		return fmt.Errorf("not a CONNACK: % x", b[:])
	}
	if b[3] != 0 {
		return fmt.Errorf("connection refused, return code %d", b[3])
	}
	return nil
}

func memRows(n int, eg, peer *memResult) []row {
	per := row{name: fmt.Sprintf("memory per idle MQTT connection (%s conns, RSS)", fmtCount(float64(n)))}
	tot := row{name: fmt.Sprintf("RSS idle → with %s connections", fmtCount(float64(n)))}
	cell := func(x *memResult) (string, string) {
		if x == nil {
			return "n/a", "n/a"
		}
		return fmtBytes(x.perConn()), fmtBytes(float64(x.before)) + " → " + fmtBytes(float64(x.after))
	}
	per.eg, tot.eg = cell(eg)
	per.peer, tot.peer = cell(peer)
	if eg != nil && peer != nil {
		if peer.perConn() > 0 {
			per.ratio = fmtRatio(eg.perConn() / peer.perConn())
		}
		tot.ratio = fmtRatio(float64(eg.after) / float64(peer.after))
	}
	return []row{per, tot}
}
