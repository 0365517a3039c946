package uplink_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/nats-io/nats-server/v2/server"
)

// TestMutualTLS: a hub that requires client certificates takes the uplink's
// connection with the site's certificate (from the development CA of
// `edgegate certs init`), and refuses one without it.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	if err := etls.WriteDevSet(dir, []string{"127.0.0.1"}, gatewayID); err != nil {
		t.Fatal(err)
	}
	f := func(name string) string { return filepath.Join(dir, name) }
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: f("server.crt"), KeyFile: f("server.key"), CaFile: f("ca.crt"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	url := "tls://" + s.Addr().String()

	cfg := fastConfig(url)
	cfg.TLS = &etls.Files{CertFile: f("client.crt"), KeyFile: f("client.key"), CAFile: f("ca.crt")}
	site := newSite(t, t.TempDir(), cfg)
	site.publish("d", "p", bridge.PriorityNormal, 1, 2)
	site.start()
	site.waitAcked(10 * time.Second)

	// Without a client certificate the hub refuses the connection.
	cfg = fastConfig(url)
	cfg.TLS = &etls.Files{CAFile: f("ca.crt")}
	bad := newSite(t, t.TempDir(), cfg)
	bad.start()
	waitFor(t, 10*time.Second, "a refused connection", func() bool { return bad.up.Status().LastError != "" })
	if st := bad.up.Status(); st.Connected || !strings.Contains(st.LastError, "connecting") {
		t.Errorf("without a client certificate: %+v", st)
	}
}
