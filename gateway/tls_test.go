package gateway_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/gateway"
	"github.com/edgegate/edgegate/internal/gatewaytest"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	etls "github.com/edgegate/edgegate/tls"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// testPKI is a CA and the server's files in a directory.
type testPKI struct {
	ca                        *etls.CA
	dir                       string
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := etls.NewCA("gateway test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, dir: t.TempDir()}
	p.caFile = filepath.Join(p.dir, "ca.crt")
	p.certFile, p.keyFile = filepath.Join(p.dir, "server.crt"), filepath.Join(p.dir, "server.key")
	if err := os.WriteFile(p.caFile, ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	p.rotate(t)
	return p
}

// rotate issues a new server certificate and renames it over the old files; it
// returns the new serial.
func (p *testPKI) rotate(t *testing.T) string {
	t.Helper()
	kp, err := p.ca.Issue(etls.Leaf{CommonName: "gateway", Hosts: []string{"127.0.0.1"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{p.keyFile: kp.KeyPEM, p.certFile: kp.CertPEM} {
		if err := os.WriteFile(name+".new", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(name+".new", name); err != nil {
			t.Fatal(err)
		}
	}
	return kp.Cert.SerialNumber.String()
}

func (p *testPKI) client(t *testing.T, identity string) tls.Certificate {
	t.Helper()
	kp, err := p.ca.Issue(etls.Leaf{URIs: []string{identity}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return kp.TLS()
}

// runTLSGateway runs a gateway from a config template with the PKI's files as %[1]s
// (cert), %[2]s (key), %[3]s (CA).
func runTLSGateway(t *testing.T, p *testPKI, tmpl string) *gateway.Gateway {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(tmpl, p.certFile, p.keyFile, p.caFile)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Gateway.ShutdownTimeout = 5 * time.Second
	g := gatewaytest.Start(t, cfg).Gateway
	return g
}

func grpcClient(t *testing.T, g *gateway.Gateway, p *testPKI, certs ...tls.Certificate) pb.GatewayClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+g.GRPCAddr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1", Certificates: certs})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewGatewayClient(cc)
}

// servedSerial is the serial of the certificate a new handshake with addr gets.
func servedSerial(t *testing.T, addr string, p *testPKI) string {
	t.Helper()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String()
}

const mtlsConfig = `
gateway: {id: tls-gw}
grpc:
  listen: 127.0.0.1:0
  tls: {cert_file: %[1]s, key_file: %[2]s, client_ca_file: %[3]s}
  authz:
    - {identity: "spiffe://site/kitchen-display", subscribe: ["fryer-*"], write: ["fryer-*"]}
http: {listen: "off"}
`

// TestGRPCmTLSRotation: a workload with a certificate sees only what authz grants
// it; the server's certificate is rotated under an open stream, a new handshake
// gets the new one within the promised 10 seconds, and the old stream goes on.
func TestGRPCmTLSRotation(t *testing.T) {
	p := newTestPKI(t)
	g := runTLSGateway(t, p, mtlsConfig)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := g.Hub().Ingest(bridge.ProtocolMQTT)
	publish := func(device string, v float64) {
		t.Helper()
		if err := in.Publish(ctx, &bridge.Message{Device: device, Point: "temp", Value: bridge.Double(v)}); err != nil {
			t.Fatal(err)
		}
	}
	display := grpcClient(t, g, p, p.client(t, "spiffe://site/kitchen-display"))
	stream, err := display.Subscribe(ctx, &pb.SubscribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	publish("boiler-1", 1)
	publish("fryer-1", 2)
	if m, err := stream.Recv(); err != nil || m.GetDevice() != "fryer-1" {
		t.Fatalf("first message: %v %v; want fryer-1 only", m, err)
	}

	// Another identity, and no certificate: refused with a status.
	_, err = grpcClient(t, g, p, p.client(t, "spiffe://site/intruder")).ListDevices(ctx, &pb.ListDevicesRequest{})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("another identity: %v", err)
	}
	_, err = grpcClient(t, g, p).ListDevices(ctx, &pb.ListDevicesRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("no certificate: %v", err)
	}

	before := servedSerial(t, g.GRPCAddr().String(), p)
	next := p.rotate(t)
	start := time.Now()
	waitFor(t, ctx, "a new handshake to present the rotated certificate", func() bool {
		return servedSerial(t, g.GRPCAddr().String(), p) == next
	})
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the rotation took %v, more than the promised 10 s", took)
	}
	t.Logf("rotated from serial %s to %s in %v", before, next, time.Since(start).Round(time.Millisecond))

	// The stream opened before the rotation still delivers.
	publish("fryer-2", 3)
	if m, err := stream.Recv(); err != nil || m.GetDevice() != "fryer-2" {
		t.Fatalf("old stream after the rotation: %v %v", m, err)
	}
	// And a new connection works with the new certificate.
	if _, err := grpcClient(t, g, p, p.client(t, "spiffe://site/kitchen-display")).ListDevices(ctx, &pb.ListDevicesRequest{}); err != nil {
		t.Errorf("new connection after the rotation: %v", err)
	}
}

func TestTunnelInGateway(t *testing.T) {
	p := newTestPKI(t)
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	g := runTLSGateway(t, p, `
gateway: {id: tunnel-gw}
http: {listen: "off"}
tunnels:
  - {name: plc, listen: 127.0.0.1:0, target: `+target.Addr().String()+`, allow: ["spiffe://site/scada"],
     tls: {cert_file: %[1]s, key_file: %[2]s, client_ca_file: %[3]s}}
`)
	addr := g.TunnelAddr("plc")
	if addr == nil {
		t.Fatal("no tunnel plc")
	}
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{p.client(t, "spiffe://site/scada")}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("read holding 0")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("read holding 0"))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	c.Close()
	<-served
}

func TestMissingCertificateFailsNew(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
grpc: {listen: 127.0.0.1:0, tls: {cert_file: %s, key_file: %s}}
http: {listen: "off"}
`, filepath.Join(dir, "nope.crt"), filepath.Join(dir, "nope.key"))))
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "grpc:") || !strings.Contains(err.Error(), "nope.crt") {
		t.Errorf("New with a missing certificate: %v", err)
	}
}

func TestHTTPSWithClientCertificates(t *testing.T) {
	p := newTestPKI(t)
	g := runTLSGateway(t, p, `
gateway: {id: https-gw}
http: {listen: 127.0.0.1:0, tls: {cert_file: %[1]s, key_file: %[2]s, client_ca_file: %[3]s}}
`)
	url := "https://" + g.HTTPAddr().String() + "/healthz"
	get := func(certs ...tls.Certificate) (int, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool(), Certificates: certs}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("served %s, want HTTP/2", resp.Proto)
		}
		return resp.StatusCode, nil
	}
	if code, err := get(p.client(t, "spiffe://site/prometheus")); err != nil || code != http.StatusOK {
		t.Errorf("with a client certificate: %d %v", code, err)
	}
	if _, err := get(); err == nil {
		t.Error("no client certificate: served")
	}
}
