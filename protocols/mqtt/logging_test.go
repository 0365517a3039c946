package mqtt

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgegate/edgegate/protocols"
)

// syncBuffer is a log destination that the broker's goroutines and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rawConnectAuth is a CONNECT of the given protocol version (4 or 5), clean session,
// with a username and a password.
func rawConnectAuth(version byte, id, user, pass string) []byte {
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', version, 0x02 | 0x80 | 0x40, 0, 30}
	if version == 5 {
		body = append(body, 0) // no properties
	}
	body = append(body, str(id)...)
	body = append(body, str(user)...)
	body = append(body, str(pass)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

// TestSecondConnectLogsNoPassword: a second CONNECT on a connection made mochi log the
// whole packet at WARN, password included (issue 19.11). With JSON and text logs, for
// 3.1.1 and v5, the line is there but neither the password nor its encodings.
func TestSecondConnectLogsNoPassword(t *testing.T) {
	const password = "hunter2-Sesame!"
	secretForms := []string{
		password,
		base64.StdEncoding.EncodeToString([]byte(password)),
		strings.Trim(fmt.Sprint([]byte(password)), "[]"), // %v of a []byte
	}
	handlers := map[string]func(*syncBuffer) slog.Handler{
		"json": func(b *syncBuffer) slog.Handler {
			return slog.NewJSONHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
		"text": func(b *syncBuffer) slog.Handler {
			return slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})
		},
	}
	for name, newHandler := range handlers {
		for _, version := range []byte{4, 5} {
			t.Run(fmt.Sprintf("%s/v%d", name, version), func(t *testing.T) {
				var logs syncBuffer
				cfg := authConfig(t)
				cfg.Users[0].PasswordHash = hash(t, password)
				e := startEnv(t, cfg, protocols.Env{Logger: slog.New(newHandler(&logs))})
				conn, r := rawConn(t, e.addr())
				connect := rawConnectAuth(version, "twice", "pos-1", password)
				if _, err := conn.Write(connect); err != nil {
					t.Fatal(err)
				}
				if typ, body, err := readPacket(r); err != nil || typ != 0x20 || body[1] != 0 {
					t.Fatalf("CONNACK %#x %v: %v", typ, body, err)
				}
				if _, err := conn.Write(connect); err != nil {
					t.Fatal(err)
				}
				expectClosed(t, r, "second CONNECT")
				waitFor(t, "mochi's line about the second CONNECT", func() bool {
					return strings.Contains(logs.String(), "error processing packet")
				})
				out := logs.String()
				for _, s := range secretForms {
					if strings.Contains(out, s) {
						t.Errorf("the log holds the password as %q:\n%s", s, out)
					}
				}
				if !strings.Contains(out, "twice") {
					t.Errorf("the line no longer says which client:\n%s", out)
				}
			})
		}
	}
}

// TestRedactPacketsInEveryShape: the packet values mochi logs elsewhere (publishes it
// failed to write, as a pointer; a will; raw bytes; inside a group or a logger's
// attributes) keep their payloads out of the log too.
func TestRedactPacketsInEveryShape(t *testing.T) {
	const secret = "unlock-987654"
	var logs syncBuffer
	log := slog.New(redactPackets(slog.NewJSONHandler(&logs, nil)))
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "devices/pos-2/unlock_code/set",
		Payload: []byte(secret), PacketID: 7, Properties: packets.Properties{AuthenticationData: []byte(secret)}}
	log.Warn("publish", "packet", &pk, "copy", pk)
	log.Error("will", "will", mochi.Will{TopicName: "devices/pos-2/online", Payload: []byte(secret)})
	log.With("raw", []byte(secret)).Info("bytes", slog.Group("g", "packet", pk))
	out := logs.String()
	for _, s := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
		if strings.Contains(out, s) {
			t.Errorf("the log holds %q:\n%s", s, out)
		}
	}
	for _, want := range []string{`"topic":"devices/pos-2/unlock_code/set"`, `"payload_bytes":13`, `"raw_bytes":13`, `"packet_id":7`} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %s:\n%s", want, out)
		}
	}
}
