package mqtt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	packets3 "github.com/eclipse/paho.mqtt.golang/packets"
	"golang.org/x/crypto/bcrypt"
)

func TestFilterCovers(t *testing.T) {
	for _, c := range []struct {
		allowed, requested string
		want               bool
	}{
		{"devices/pos-1/#", "devices/pos-1/temp", true},
		{"devices/pos-1/#", "devices/pos-1", true}, // "a/#" matches "a" itself
		{"devices/pos-1/#", "devices/pos-1/+/set", true},
		{"devices/pos-1/#", "devices/pos-1/#", true},
		{"devices/pos-1/#", "devices/#", false},
		{"devices/pos-1/#", "devices/pos-2/temp", false},
		{"devices/pos-1/#", "devices/+/temp", false},
		{"devices/+/temp", "devices/a/temp", true},
		{"devices/+/temp", "devices/+/temp", true},
		{"devices/+/temp", "devices/#", false},
		{"devices/+/temp", "devices/a/temp/x", false},
		{"devices/+/temp", "devices/a", false},
		{"#", "anything/at/all", true},
		{"#", "$SYS/broker/uptime", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b", "a", false},
		{"a/b", "a/+", false},
	} {
		if got := filterCovers(c.allowed, c.requested); got != c.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", c.allowed, c.requested, got, c.want)
		}
	}
}

func authConfig(t *testing.T) *Config {
	cfg := testConfig()
	cfg.AllowAnonymous = false
	cfg.Users = []UserConfig{
		{Username: "pos-1", PasswordHash: hash(t, "s3cret"), Publish: []string{"devices/pos-1/#"}, Subscribe: []string{"devices/pos-1/+/set"}},
		{Username: "reader", PasswordHash: hash(t, "r"), Subscribe: []string{"#"}},
	}
	return cfg
}

func TestAuthAcceptAndRefuse(t *testing.T) {
	e := start(t, authConfig(t))

	// 3.1.1: the right password connects; a wrong one, an unknown user and no
	// credentials at all are refused with the 3.1.1 codes.
	c := mustClient3(t, e.addr(), "", "pos-1", "s3cret")
	publish3(t, c, "devices/pos-1/temp", 1, "20")
	if m := e.next(1)[0]; m.Device != "pos-1" {
		t.Errorf("got %s", m.Device)
	}
	for _, tc := range []struct {
		user, pass string
		want       error
	}{
		{"pos-1", "wrong", packets3.ErrorRefusedBadUsernameOrPassword},
		{"nobody", "s3cret", packets3.ErrorRefusedBadUsernameOrPassword},
		{"", "", packets3.ErrorRefusedNotAuthorised},
	} {
		if _, err := client3(t, e.addr(), "", tc.user, tc.pass); !errors.Is(err, tc.want) {
			t.Errorf("3.1.1 connect as %q/%q: %v, want %v", tc.user, tc.pass, err, tc.want)
		}
	}

	// v5: the same, with the v5 reason codes.
	c5 := mustClient5(t, e.addr(), "", "pos-1", "s3cret")
	if _, err := c5.publish(t, "devices/pos-1/hum", 1, "40"); err != nil {
		t.Fatal(err)
	}
	e.next(1)
	for _, tc := range []struct {
		user, pass string
		want       byte
	}{
		{"pos-1", "wrong", 0x86},
		{"", "", 0x87},
	} {
		_, ca, err := connect5(t, e.addr(), "", tc.user, tc.pass)
		if err == nil || ca == nil || ca.ReasonCode != tc.want {
			t.Errorf("v5 connect as %q: connack %+v, %v; want reason %#x", tc.user, ca, err, tc.want)
		}
	}
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedBadCredentials)); n != 3 {
		t.Errorf("refused for bad credentials: %v, want 3", n)
	}
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedNotAuthorized)); n != 2 {
		t.Errorf("refused as anonymous: %v, want 2", n)
	}
}

func TestACL(t *testing.T) {
	e := start(t, authConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	// v5: a publish outside the user's filters gets PUBACK "not authorized" and is
	// neither ingested nor delivered.
	reader := mustClient5(t, e.addr(), "", "reader", "r")
	if _, err := reader.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "devices/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pos := mustClient5(t, e.addr(), "", "pos-1", "s3cret")
	resp, err := pos.publish(t, "devices/pos-2/temp", 1, "1")
	if err == nil || resp == nil || resp.ReasonCode != 0x87 {
		t.Errorf("publish outside the ACL: %+v, %v; want PUBACK 0x87", resp, err)
	}
	// The reader may not publish at all.
	if resp, err := reader.publish(t, "devices/x/temp", 1, "1"); err == nil {
		t.Errorf("reader published: %+v", resp)
	}
	// Subscriptions: allowed within the list, refused outside it.
	sa, err := pos.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "devices/pos-1/+/set", QoS: 1}, {Topic: "devices/pos-2/+/set", QoS: 1}, {Topic: "#", QoS: 1}}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if len(sa.Reasons) != 3 || sa.Reasons[0] != 1 || sa.Reasons[1] != 0x87 || sa.Reasons[2] != 0x87 {
		t.Errorf("SUBACK reasons %v, want [1 0x87 0x87]", sa.Reasons)
	}
	// What is allowed goes through, and is the only thing the reader sees.
	if _, err := pos.publish(t, "devices/pos-1/temp", 1, "2"); err != nil {
		t.Fatal(err)
	}
	if m := e.next(1)[0]; m.Device != "pos-1" {
		t.Errorf("ingested %s", m.Device)
	}
	select {
	case p := <-reader.received:
		if p.Topic != "devices/pos-1/temp" {
			t.Errorf("reader got %s", p.Topic)
		}
	case <-time.After(waitTimeout):
		t.Fatal("reader got nothing")
	}

	// 3.1.1 has no negative PUBACK: mochi closes the connection of a client that
	// publishes outside its ACL with QoS > 0.
	c3 := mustClient3(t, e.addr(), "", "pos-1", "s3cret")
	_ = c3.Publish("devices/pos-2/temp", 1, false, "1") // never acknowledged
	waitFor(t, "3.1.1 client disconnected", func() bool { return !c3.IsConnectionOpen() })
	if n := e.counter(e.a.metrics.aclDenied.WithLabelValues("publish")); n != 3 {
		t.Errorf("publishes denied: %v, want 3", n)
	}
}

func TestWillTopicACLAndInlineID(t *testing.T) {
	e := start(t, authConfig(t))
	will := func(topic string) func(*paho.Connect) {
		return func(c *paho.Connect) {
			c.WillMessage = &paho.WillMessage{Topic: topic, QoS: 1, Payload: []byte("offline")}
		}
	}
	// A will outside the user's publish list would be published without an ACL
	// check: the connection is refused instead.
	if _, ca, err := connect5(t, e.addr(), "", "pos-1", "s3cret", will("devices/pos-2/status")); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Errorf("will outside the ACL: %+v, %v; want 0x87", ca, err)
	}
	if _, _, err := connect5(t, e.addr(), "", "pos-1", "s3cret", will("devices/pos-1/status")); err != nil {
		t.Errorf("will inside the ACL: %v", err)
	}
	if _, ca, err := connect5(t, e.addr(), "inline", "pos-1", "s3cret"); err == nil || ca == nil || ca.ReasonCode != 0x85 {
		t.Errorf("client id inline: %+v, %v; want 0x85", ca, err)
	}
	if n := e.counter(e.a.metrics.refused.WithLabelValues(refusedWillTopic)); n != 1 {
		t.Errorf("refused for the will topic: %v", n)
	}
}

func TestDummyHashIsAValidBcryptHash(t *testing.T) {
	if _, err := bcrypt.Cost(dummyHash); err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword(dummyHash, []byte("edgegate: no such user")) != nil {
		t.Fatal("dummyHash is not the hash of its documented password")
	}
}
