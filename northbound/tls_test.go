package northbound_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/mosquittotest"
	"github.com/edgegate/edgegate/internal/testwait"
	etls "github.com/edgegate/edgegate/tls"
)

// TestTLSClientCertAndPasswordFile: a link reaches a mosquitto that requires a
// client certificate and a login, with the gateway's tls block; the password
// file is read at every attempt, so a wrong password fixed in the file is used
// at the next one.
func TestTLSClientCertAndPasswordFile(t *testing.T) {
	dir := t.TempDir()
	ca, err := etls.NewCA("northbound test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	if err := os.WriteFile(file("ca.crt"), ca.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name string
		leaf etls.Leaf
	}{
		{"server", etls.Leaf{CommonName: "broker", Hosts: []string{"127.0.0.1"}, Server: true}},
		{"client", etls.Leaf{CommonName: "site-1", Client: true}},
	} {
		kp, err := ca.Issue(l.leaf)
		if err != nil {
			t.Fatal(err)
		}
		if err := kp.Write(file(l.name+".crt"), file(l.name+".key")); err != nil {
			t.Fatal(err)
		}
	}
	b := mosquittotest.StartWith(t, mosquittotest.Options{
		CAFile: file("ca.crt"), CertFile: file("server.crt"), KeyFile: file("server.key"),
		Users: map[string]string{"site": "s3cret"},
	})
	if err := os.WriteFile(file("password"), []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSite(t, t.TempDir())
	cfg := testConfig(b.URL())
	cfg.MQTT.TLS = &etls.Files{CAFile: file("ca.crt"), CertFile: file("client.crt"), KeyFile: file("client.key")}
	cfg.MQTT.Username, cfg.MQTT.PasswordFile = "site", file("password")
	l := s.link(cfg)
	run(t, l)
	want := s.publish(10, 0)
	testwait.For(t, 10*time.Second, "a refused login", func() bool { return l.Status().LastError != "" })
	t.Logf("with a wrong password: %s", l.Status().LastError)
	if st := l.Status(); st.Connected || st.Published != 0 {
		t.Fatalf("connected with a wrong password: %+v", st)
	}
	if err := os.WriteFile(file("password"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the messages on the broker", func() bool { return l.Acked() == want[len(want)-1] })
	if st := l.Status(); !st.Connected || st.Published != 10 || st.Reconnects < 1 {
		t.Errorf("status: %+v", st)
	}
}
