package uplink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/uplink"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSitePermissions: a hub that gives a site's user exactly SitePermissions
// (what docs/uplink.md tells operators to configure) lets the uplink forward and
// take commands with streams the hub defined, and keeps the site out of every
// other site's subjects.
func TestSitePermissions(t *testing.T) {
	pub, sub := uplink.SitePermissions(gatewayID)
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "admin", Password: "admin"},
			{Username: gatewayID, Password: "s3cret", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: pub},
				Subscribe: &server.SubjectPermission{Allow: sub},
			}},
		},
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
	addr := s.Addr().String()
	admin := "nats://admin:admin@" + addr

	// The hub's operator defines the streams (docs/uplink.md).
	nc, err := nats.Connect(admin)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sc := range []jetstream.StreamConfig{
		{Name: uplink.DataStream, Subjects: []string{"edgegate.data.>"}, Duplicates: 2 * time.Minute},
		{Name: uplink.CommandStream, Subjects: []string{"edgegate.cmd.>"}},
	} {
		if _, err := js.CreateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}

	cfg := fastConfig(fmt.Sprintf("nats://%s:s3cret@%s", gatewayID, addr))
	cfg.CreateStreams = false
	site := newSite(t, t.TempDir(), cfg)
	site.publish("pump", "setpoint", bridge.PriorityNormal, 1, 2, 3)
	site.start()
	site.waitAcked(10 * time.Second)
	if st := site.up.Status(); st.URL != "nats://[redacted]@"+addr {
		t.Errorf("status shows the URL %q", st.URL)
	}
	h := newHubClient(t, admin)
	h.send(&pb.WriteRequest{Device: "pump", Point: "setpoint", Value: intValue(8), RequestId: "p1"}, time.Time{})
	if r := h.result(10 * time.Second); r.GetCode() != 0 || r.GetRequestId() != "p1" {
		t.Errorf("result: %v", r)
	}
	if got := hubMessages(t, admin); len(got) != 3 {
		t.Errorf("hub has %d messages, want 3", len(got))
	}

	// The same user may not touch another site's subjects.
	denied := make(chan error, 4)
	other, err := nats.Connect(fmt.Sprintf("nats://%s:s3cret@%s", gatewayID, addr),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { denied <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.Publish("edgegate.data.site-2.pump.setpoint", []byte("forged"))
	other.Flush()
	select {
	case err := <-denied:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("publishing as another site: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("publishing on another site's subject was not refused")
	}
	if _, err := other.SubscribeSync("edgegate.cmd.site-2"); err == nil {
		other.Flush()
		select {
		case err := <-denied:
			if !errors.Is(err, nats.ErrPermissionViolation) {
				t.Errorf("subscribing to another site's commands: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("subscribing to another site's commands was not refused")
		}
	}
}
