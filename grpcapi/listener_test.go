package grpcapi

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/internal/testwait"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serveGuarded serves the service and health on a loopback port as the gateway
// does: a Listener with max connections, the handshake bounded.
func serveGuarded(t *testing.T, max int, handshake time.Duration) (string, *prometheus.Registry) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	gl := NewListener(ln, ListenerOptions{MaxConnections: max, Metrics: reg})
	srv := grpc.NewServer(HandshakeTimeout(handshake))
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	New(hub, Options{}).Register(srv)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(gl)
	}()
	t.Cleanup(func() {
		srv.Stop()
		hub.Close()
		<-done
	})
	return ln.Addr().String(), reg
}

// idleSockets opens n TCP connections that never send a byte.
func idleSockets(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	out := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, c)
	}
	return out
}

func dialInsecure(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// Issue 19.5: sockets that never send the HTTP/2 preface held every connection
// slot (netutil.LimitListener) for grpc-go's 120-second handshake timeout, and
// every call timed out. Now a new connection takes the slot of the oldest one
// still in its handshake, so a health probe and an RPC get through at once,
// whatever the handshake timeout (an hour here, so that only eviction can help).
func TestIdleSocketsDoNotLockOutProbes(t *testing.T) {
	const max = 16
	addr, reg := serveGuarded(t, max, time.Hour)
	idleSockets(t, addr, 3*max)
	cc := dialInsecure(t, addr)
	ctx := testCtx(t)
	if resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check behind %d idle sockets: %v, %v", 3*max, resp, err)
	}
	if _, err := pb.NewGatewayClient(cc).ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil {
		t.Fatalf("ListDevices behind idle sockets: %v", err)
	}
	// The idle sockets made room for each other and for the client.
	testwait.Until(t, ctx, "evictions counted", func() bool {
		return metricSum(t, reg, "edgegate_grpc_connections_closed_total", "evicted") >= 2*max+1
	})
	if n := metricSum(t, reg, "edgegate_grpc_connections", ""); n > max {
		t.Errorf("%v connections open, bound %d", n, max)
	}
}

// A socket that does not finish its handshake in time is closed and counted;
// when every slot holds an established connection, a new one is refused and
// counted, and the established ones go on.
func TestHandshakeTimeoutAndRefusal(t *testing.T) {
	addr, reg := serveGuarded(t, 2, 50*time.Millisecond)
	ctx := testCtx(t)
	idle := idleSockets(t, addr, 1)[0]
	if _, err := io.ReadAll(idle); err != nil { // the server writes its settings, then closes
		t.Fatal(err)
	}
	testwait.Until(t, ctx, "the timeout counted", func() bool {
		return metricSum(t, reg, "edgegate_grpc_connections_closed_total", "handshake_timeout") == 1
	})

	var clients []pb.GatewayClient
	for range 2 {
		c := pb.NewGatewayClient(dialInsecure(t, addr))
		if _, err := c.ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	third := idleSockets(t, addr, 1)[0]
	if n, err := third.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("a connection past the bound: read %d, %v; want it closed", n, err)
	}
	if got := metricSum(t, reg, "edgegate_grpc_connections_closed_total", "refused"); got != 1 {
		t.Errorf("refused = %v", got)
	}
	for _, c := range clients {
		if _, err := c.ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil {
			t.Errorf("an established client after the refusal: %v", err)
		}
	}
}
