package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	etls "github.com/edgegate/edgegate/tls"
	"github.com/edgegate/edgegate/tls/tlsbase"
)

// The TLS section measures what TLS costs where the gateway adds it:
//   - logins per second on the MQTT TLS listener: a full TLS 1.3 handshake with an
//     ECDSA P-256 client certificate (no session resumption) and an MQTT 3.1.1
//     CONNECT/CONNACK logged in by that certificate, from several clients at once;
//     edgegate against mosquitto with the same files (require_certificate,
//     use_identity_as_username);
//   - a TLS tunnel (Modbus/TCP Security in front of a plain port) against a
//     direct TCP connection to the same port: bulk throughput on one connection,
//     and round trips of a Modbus-sized request on one connection.
// The device port is in edgebench's process: a sink that counts what it reads,
// or an echo.

// tlsLoginClients is how many clients log in at once.
func tlsLoginClients() int { return max(4, 2*runtime.NumCPU()) }

const (
	tunnelChunk   = 64 << 10
	tunnelRequest = 12 // a Modbus/TCP read request: MBAP header and PDU
)

func (e *env) tlsSection(ctx context.Context) {
	dir := filepath.Join(e.tmp, "tls")
	if err := etls.WriteDevSet(dir, []string{"127.0.0.1"}, "fryer-1"); err != nil {
		e.fail("tls: certificates", err)
		return
	}
	clientTLS, err := benchClientTLS(dir)
	if err != nil {
		e.fail("tls: certificates", err)
		return
	}
	target, err := startTunnelTarget()
	if err != nil {
		e.fail("tls: device port", err)
		return
	}
	defer target.close()

	clients := tlsLoginClients()
	loginName := fmt.Sprintf("MQTT TLS logins/s (TLS 1.3 handshake, ECDSA P-256 client certificate, CONNECT/CONNACK), %d clients", clients)
	bulkName := fmt.Sprintf("TLS tunnel throughput, MB/s (%d KiB writes, one connection; median of turns)", tunnelChunk>>10)
	rtName := fmt.Sprintf("TLS tunnel round trips/s (%d-byte request echoed, one connection; median of turns)", tunnelRequest)

	// The tunnel and the direct connection take turns, and each figure is the
	// median of its rounds: on a shared machine, load that comes and goes then
	// falls on both.
	rounds := 3
	if e.quick {
		rounds = 1
	}
	direct := func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target.addr)
	}
	var egLogins float64
	var egBulk, directBulk, egRT, directRT []float64
	gw, mqttAddr, tunnelAddr, err := e.startTLSGateway(ctx, dir, target.addr)
	if err != nil {
		e.fail("tls: edgegate", err)
	} else {
		if egLogins, err = e.loginRate(ctx, mqttAddr, clientTLS, clients); err != nil {
			e.fail("tls: edgegate logins", err)
		}
		tunnel := tlsDialer(tunnelAddr, clientTLS)
		for range rounds {
			for _, m := range []struct {
				what string
				into *[]float64
				run  func() (float64, error)
			}{
				{"tunnel throughput", &egBulk, func() (float64, error) { return e.bulkRate(ctx, target, tunnel) }},
				{"direct throughput", &directBulk, func() (float64, error) { return e.bulkRate(ctx, target, direct) }},
				{"tunnel round trips", &egRT, func() (float64, error) { return e.roundTripRate(ctx, tunnel) }},
				{"direct round trips", &directRT, func() (float64, error) { return e.roundTripRate(ctx, direct) }},
			} {
				v, err := m.run()
				if err != nil {
					e.fail("tls: "+m.what, err)
					continue
				}
				*m.into = append(*m.into, v)
			}
		}
		gw.stop()
	}
	var mqLogins float64
	if e.mosquitto != "" {
		mq, addr, err := e.startTLSMosquitto(ctx, dir)
		if err != nil {
			e.fail("tls: mosquitto", err)
		} else {
			if mqLogins, err = e.loginRate(ctx, addr, clientTLS, clients); err != nil {
				e.fail("tls: mosquitto logins", err)
			}
			mq.stop()
		}
	}
	tb, db := median(egBulk), median(directBulk)
	e.rows = append(e.rows,
		rateRow(loginName, egLogins, mqLogins, ""),
		row{name: bulkName, eg: fmt.Sprintf("%.0f", tb/1e6), peer: fmt.Sprintf("%.0f", db/1e6), peerName: "direct TCP", ratio: ratioOf(tb, db)},
		rateRow(rtName, median(egRT), median(directRT), "direct TCP"),
	)
}

// median of a few figures; 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func benchClientTLS(dir string) (*tls.Config, error) {
	pool, err := tlsbase.LoadPool(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key"))
	if err != nil {
		return nil, err
	}
	// No ClientSessionCache: every login is a full handshake.
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

func tlsDialer(addr string, cfg *tls.Config) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		d := tls.Dialer{Config: cfg}
		return d.DialContext(ctx, "tcp", addr)
	}
}

// startTLSGateway runs bin/edgegate with an MQTT TLS listener that requires client
// certificates and a tunnel to target.
func (e *env) startTLSGateway(ctx context.Context, dir, target string) (*proc, string, string, error) {
	mqttAddr, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	tunnelAddr, err := freePort()
	if err != nil {
		return nil, "", "", err
	}
	files := fmt.Sprintf("{cert_file: %q, key_file: %q, client_ca_file: %q}",
		filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"), filepath.Join(dir, "ca.crt"))
	cfgText := fmt.Sprintf(`gateway: {id: edgebench-tls, log_level: warn}
grpc: {listen: "127.0.0.1:0"}
http: {listen: "127.0.0.1:0"}
mqtt:
  listeners: [{type: tls, address: %q, tls: %s}]
  max_connections: 100000
tunnels:
  - {name: bench, listen: %q, target: %q, max_connections: 64, tls: %s}
`, mqttAddr, files, tunnelAddr, target, files)
	cfg := filepath.Join(e.tmp, "edgegate-tls.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		return nil, "", "", err
	}
	// log_level warn keeps the gateway quiet while it is measured: its ports say
	// when it serves.
	p, err := startProc(kindEdgegate, e.gateway, []string{"serve", "--config", cfg}, nil, false)
	if err != nil {
		return nil, "", "", err
	}
	if err := waitDial(ctx, p, mqttAddr); err != nil {
		p.stop()
		return nil, "", "", err
	}
	if err := waitDial(ctx, p, tunnelAddr); err != nil {
		p.stop()
		return nil, "", "", err
	}
	return p, mqttAddr, tunnelAddr, nil
}

// startTLSMosquitto runs mosquitto with a TLS listener on the same files, logins by
// client certificate.
func (e *env) startTLSMosquitto(ctx context.Context, dir string) (*proc, string, error) {
	addr, err := freePort()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := strings.Cut(addr, ":")
	// Run as us: started as root, mosquitto would become the mosquitto user,
	// which cannot read a key file with mode 0600 in our temporary directory.
	me, err := user.Current()
	if err != nil {
		return nil, "", err
	}
	conf := fmt.Sprintf(`user %s
listener %s %s
cafile %s
certfile %s
keyfile %s
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
allow_anonymous false
persistence false
max_connections -1
log_dest stderr
log_type error
`, me.Username, port, host, filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key"))
	cfg := filepath.Join(e.tmp, "mosquitto-tls.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, "", err
	}
	p, err := startProc(kindMosquitto, e.mosquitto, []string{"-c", cfg}, nil, false)
	if err != nil {
		return nil, "", err
	}
	if err := waitDial(ctx, p, addr); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

// mqttConnect is an MQTT 3.1.1 CONNECT with clean session, keepalive 30 s, the
// client id id, and no user name: the certificate is the login.
func mqttConnect(id string) []byte {
	vh := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 30}
	payload := append([]byte{byte(len(id) >> 8), byte(len(id))}, id...)
	rest := len(vh) + len(payload)
	return append(append([]byte{0x10, byte(rest)}, vh...), payload...)
}

// loginRate measures full TLS logins per second with clients at once: warm-up,
// then the measurement.
func (e *env) loginRate(ctx context.Context, addr string, cfg *tls.Config, clients int) (float64, error) {
	run := func(d time.Duration) (int64, error) {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		deadline, _ := ctx.Deadline()
		var n, failures atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					err := login(ctx, addr, cfg, fmt.Sprintf("fryer-1-%d-%d", w, i))
					if err == nil {
						n.Add(1)
						continue
					}
					// Past the deadline a dial fails at once, a moment before
					// ctx.Err() says so: that is the end, not a failure.
					if ctx.Err() != nil || !time.Now().Before(deadline) {
						return
					}
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}()
		}
		wg.Wait()
		if f := failures.Load(); f > n.Load()/100 {
			return 0, fmt.Errorf("%d of %d logins failed, first: %v", f, f+n.Load(), firstErr.Load())
		}
		return n.Load(), nil
	}
	if _, err := run(e.warmup); err != nil {
		return 0, err
	}
	n, err := run(e.duration)
	if err != nil {
		return 0, err
	}
	return float64(n) / e.duration.Seconds(), nil
}

func login(ctx context.Context, addr string, cfg *tls.Config, id string) error {
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(mqttConnect(id)); err != nil {
		return err
	}
	var ack [4]byte
	if _, err := io.ReadFull(nc, ack[:]); err != nil {
		return fmt.Errorf("CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x: refused", ack)
	}
	// No DISCONNECT: the client hangs up first, so that TIME_WAIT stays on its
	// side. After a server's close on loopback, a SYN from a reused port can meet
	// the server's TIME_WAIT and wait a second for its retransmission.
	return nil
}

// bulkRate is the bytes per second the device port receives from one connection
// writing tunnelChunk at a time.
func (e *env) bulkRate(ctx context.Context, t *tunnelTarget, dial func(context.Context) (net.Conn, error)) (float64, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := dial(dctx)
	cancel()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	if _, err := nc.Write([]byte{'B'}); err != nil {
		return 0, err
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() {
		buf := make([]byte, tunnelChunk)
		for wctx.Err() == nil {
			nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(buf); err != nil {
				if wctx.Err() != nil {
					err = nil
				}
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	if err := sleepCtx(ctx, e.warmup); err != nil {
		return 0, err
	}
	start, t0 := t.bytes.Load(), time.Now()
	if err := sleepCtx(ctx, e.duration); err != nil {
		return 0, err
	}
	got, took := t.bytes.Load()-start, time.Since(t0)
	stop()
	nc.Close() // ends a write blocked on a full buffer
	if err := <-werr; err != nil && !errors.Is(err, net.ErrClosed) {
		return 0, err
	}
	return float64(got) / took.Seconds(), nil
}

// roundTripRate is requests per second on one connection, each echoed before the
// next is sent, as a Modbus master polls.
func (e *env) roundTripRate(ctx context.Context, dial func(context.Context) (net.Conn, error)) (float64, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := dial(dctx)
	cancel()
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	if _, err := nc.Write([]byte{'E'}); err != nil {
		return 0, err
	}
	req := []byte{0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 1}
	resp := make([]byte, len(req))
	run := func(d time.Duration) (int, error) {
		n := 0
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(req); err != nil {
				return n, err
			}
			if _, err := io.ReadFull(nc, resp); err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	if _, err := run(e.warmup); err != nil {
		return 0, err
	}
	t0 := time.Now()
	n, err := run(e.duration)
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// tunnelTarget is the plain device port: a connection's first byte says whether
// it is a sink ('B', counting what it reads) or an echo ('E').
type tunnelTarget struct {
	addr  string
	ln    net.Listener
	bytes atomic.Int64
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startTunnelTarget() (*tunnelTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tunnelTarget{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.mu.Lock()
			t.conns[c] = struct{}{}
			t.mu.Unlock()
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer func() {
					t.mu.Lock()
					delete(t.conns, c)
					t.mu.Unlock()
					c.Close()
				}()
				t.serve(c)
			}()
		}
	}()
	return t, nil
}

func (t *tunnelTarget) serve(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	buf := make([]byte, tunnelChunk)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if mode[0] == 'E' {
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			} else {
				t.bytes.Add(int64(n))
			}
		}
		if err != nil {
			return
		}
	}
}

func (t *tunnelTarget) close() {
	t.ln.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}
