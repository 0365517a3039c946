package grpcapi

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// tlsFixture is the service over real TLS on a loopback port, with the
// authorization interceptors, as the gateway serves it.
type tlsFixture struct {
	hub    *bridge.Hub
	writer *recordingWriter
	addr   string
	ca     *etls.CA
}

func startTLS(t *testing.T, o AuthzOptions, opts ...Options) *tlsFixture {
	t.Helper()
	ca, err := etls.NewCA("test ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srvKP, err := ca.Issue(etls.Leaf{Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := &etls.Files{CertFile: filepath.Join(dir, "s.crt"), KeyFile: filepath.Join(dir, "s.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	if err := srvKP.Write(files.CertFile, files.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files.ClientCAFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := files.Source(true)
	if err != nil {
		t.Fatal(err)
	}
	tc := src.ServerConfigVerifyLater() // as the gateway does: the interceptor verifies, and answers Unauthenticated
	o.Verify = src.VerifyPeer
	az, err := NewAuthz(o)
	if err != nil {
		t.Fatal(err)
	}
	hub := bridge.NewHub(bridge.HubConfig{}, nil)
	w := &recordingWriter{}
	hub.SetWriter(bridge.ProtocolMQTT, w)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)),
		grpc.ChainUnaryInterceptor(az.Unary), grpc.ChainStreamInterceptor(az.Stream))
	New(hub, append(opts, Options{})[0]).Register(srv)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		hub.Close()
		srv.Stop()
		<-done
	})
	return &tlsFixture{hub: hub, writer: w, addr: ln.Addr().String(), ca: ca}
}

// client connects with a certificate for identity (none when empty); issuer nil is
// the fixture's CA.
func (f *tlsFixture) client(t *testing.T, identity string, issuer *etls.CA, leaf ...etls.Leaf) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{RootCAs: f.ca.Pool()}
	if identity != "" || len(leaf) > 0 {
		if issuer == nil {
			issuer = f.ca
		}
		l := etls.Leaf{CommonName: identity, Client: true}
		if strings.HasPrefix(identity, "spiffe://") {
			l = etls.Leaf{URIs: []string{identity}, Client: true}
		}
		if len(leaf) > 0 {
			l = leaf[0]
		}
		kp, err := issuer.Issue(l)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{kp.TLS()}
	}
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: got %v, want %s", what, err, code)
	}
}

var kitchenRules = []Rule{
	{Identity: "spiffe://site/kitchen-display", Subscribe: []string{"fryer-*"}, Write: []string{"fryer-*"}},
	{Identity: "spiffe://site/reader-*", Subscribe: []string{"*"}},
}

func TestAuthzRestricted(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := startTLS(t, AuthzOptions{RequireIdentity: true, Restrict: true, Rules: kitchenRules, Metrics: reg})
	ctx := testCtx(t)
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	publish(t, in, "boiler-1", "temperature", bridge.Double(70), nil)
	publish(t, in, "fryer-1", "oil_temp", bridge.Double(180), nil)

	display := pb.NewGatewayClient(f.client(t, "spiffe://site/kitchen-display", nil))
	stream, err := display.Subscribe(ctx, &pb.SubscribeRequest{}) // everything it may see
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	publish(t, in, "boiler-1", "temperature", bridge.Double(71), nil)
	publish(t, in, "fryer-2", "oil_temp", bridge.Double(181), nil)
	publish(t, in, "boiler-1", "temperature", bridge.Double(72), nil)
	publish(t, in, "fryer-1", "oil_temp", bridge.Double(182), nil)
	for _, want := range []string{"fryer-2", "fryer-1"} {
		m, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetDevice() != want {
			t.Fatalf("display got %s, want %s: a device outside its grant was delivered", m.GetDevice(), want)
		}
	}
	// A request for a device outside the grant yields nothing of it.
	narrow, err := display.Subscribe(ctx, &pb.SubscribeRequest{Devices: []string{"boiler-1", "fryer-2"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := narrow.Header(); err != nil {
		t.Fatal(err)
	}
	publish(t, in, "boiler-1", "temperature", bridge.Double(73), nil)
	publish(t, in, "fryer-2", "oil_temp", bridge.Double(183), nil)
	if m, err := narrow.Recv(); err != nil || m.GetDevice() != "fryer-2" {
		t.Fatalf("narrow subscription: %v %v", m, err)
	}

	if _, err := display.Write(ctx, &pb.WriteRequest{Device: "fryer-1", Point: "setpoint", Value: pbconv.ValueToProto(bridge.Double(175))}); err != nil {
		t.Errorf("write to a granted device: %v", err)
	}
	_, err = display.Write(ctx, &pb.WriteRequest{Device: "boiler-1", Point: "setpoint", Value: pbconv.ValueToProto(bridge.Double(90))})
	wantCode(t, "write outside the grant", err, codes.PermissionDenied)
	f.writer.mu.Lock()
	writes := append([]string(nil), f.writer.writes...)
	f.writer.mu.Unlock()
	if len(writes) != 1 || !strings.HasPrefix(writes[0], "fryer-1/") {
		t.Errorf("the devices received %q; want only the granted write", writes)
	}

	_, err = display.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{{Device: "boiler-1", Point: "temperature"}}})
	wantCode(t, "read outside the grant", err, codes.PermissionDenied)
	all, err := display.Read(ctx, &pb.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all.GetMessages() {
		if !strings.HasPrefix(m.GetDevice(), "fryer-") {
			t.Errorf("read of every point returned %s", m.GetDevice())
		}
	}
	if len(all.GetMessages()) != 2 {
		t.Errorf("read of every point: %d messages, want the 2 fryers'", len(all.GetMessages()))
	}
	devs, err := display.ListDevices(ctx, &pb.ListDevicesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs.GetDevices()) != 2 {
		t.Errorf("ListDevices: %v, want the 2 fryers", devs.GetDevices())
	}

	// A reader may see everything but write nothing.
	reader := pb.NewGatewayClient(f.client(t, "spiffe://site/reader-3", nil))
	if devs, err := reader.ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil || len(devs.GetDevices()) != 3 {
		t.Errorf("reader ListDevices: %v %v", devs, err)
	}
	_, err = reader.Write(ctx, &pb.WriteRequest{Device: "fryer-1", Point: "setpoint", Value: pbconv.ValueToProto(bridge.Double(1))})
	wantCode(t, "reader write", err, codes.PermissionDenied)

	// A good certificate for an identity not in the list: nothing.
	intruder := pb.NewGatewayClient(f.client(t, "spiffe://site/intruder", nil))
	s, err := intruder.Subscribe(ctx, &pb.SubscribeRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	wantCode(t, "another identity's Subscribe", err, codes.PermissionDenied)
	_, err = intruder.ListDevices(ctx, &pb.ListDevicesRequest{})
	wantCode(t, "another identity's ListDevices", err, codes.PermissionDenied)
	_, err = intruder.Ack(ctx, &pb.AckRequest{Consumer: "c", Sequence: 1})
	wantCode(t, "another identity's Ack", err, codes.PermissionDenied)

	// No certificate: Unauthenticated, but the health service answers.
	anonConn := f.client(t, "", nil)
	_, err = pb.NewGatewayClient(anonConn).ListDevices(ctx, &pb.ListDevicesRequest{})
	wantCode(t, "no certificate", err, codes.Unauthenticated)
	if _, err := healthpb.NewHealthClient(anonConn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without a certificate: %v", err)
	}

	// A certificate of another CA, or expired: Unauthenticated, saying why.
	other, err := etls.NewCA("other", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pb.NewGatewayClient(f.client(t, "spiffe://site/kitchen-display", other)).ListDevices(ctx, &pb.ListDevicesRequest{})
	wantCode(t, "wrong CA", err, codes.Unauthenticated)
	if err != nil && !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("wrong CA: %v does not say what was wrong", err)
	}
	expired := etls.Leaf{URIs: []string{"spiffe://site/kitchen-display"}, Client: true,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}
	_, err = pb.NewGatewayClient(f.client(t, "", nil, expired)).ListDevices(ctx, &pb.ListDevicesRequest{})
	wantCode(t, "expired certificate", err, codes.Unauthenticated)
	if err != nil && !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired: %v does not say what was wrong", err)
	}

	var m struct{ denied, unauth float64 }
	m.denied = counterValue(t, reg, "edgegate_grpc_authz_denied_total", "PermissionDenied")
	m.unauth = counterValue(t, reg, "edgegate_grpc_authz_denied_total", "Unauthenticated")
	if m.denied < 6 || m.unauth < 3 {
		t.Errorf("denied metric: %+v", m)
	}
}

// counterValue sums a counter's series with a label value code.
func counterValue(t *testing.T, reg *prometheus.Registry, name, code string) float64 {
	t.Helper()
	return metricSum(t, reg, name, code)
}

// TestAuthzMTLSWithoutRules: with client certificates and no authz list, any
// client whose certificate chains to the CA may do everything; none is refused.
func TestAuthzMTLSWithoutRules(t *testing.T) {
	f := startTLS(t, AuthzOptions{RequireIdentity: true})
	ctx := testCtx(t)
	publish(t, f.hub.Ingest(bridge.ProtocolMQTT), "boiler-1", "temperature", bridge.Double(70), nil)
	c := pb.NewGatewayClient(f.client(t, "anyone", nil))
	if _, err := c.Write(ctx, &pb.WriteRequest{Device: "boiler-1", Point: "setpoint", Value: pbconv.ValueToProto(bridge.Int(1))}); err != nil {
		t.Errorf("write: %v", err)
	}
	if devs, err := c.ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil || len(devs.GetDevices()) != 1 {
		t.Errorf("ListDevices: %v %v", devs, err)
	}
	_, err := pb.NewGatewayClient(f.client(t, "", nil)).ListDevices(ctx, &pb.ListDevicesRequest{})
	wantCode(t, "no certificate", err, codes.Unauthenticated)
}

func TestNewAuthzRefusesBadPatterns(t *testing.T) {
	for _, r := range []Rule{{Identity: ""}, {Identity: "[x"}, {Identity: "a", Subscribe: []string{"[x"}}, {Identity: "a", Write: []string{"[x"}}} {
		if _, err := NewAuthz(AuthzOptions{Restrict: true, Rules: []Rule{r}}); err == nil {
			t.Errorf("NewAuthz(%+v) accepted", r)
		}
	}
}
