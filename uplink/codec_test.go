package uplink

import (
	"errors"
	"testing"

	"github.com/edgegate/edgegate/bridge"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func mustWriteRequest(t testing.TB) []byte {
	b, err := proto.Marshal(&pb.WriteRequest{Device: "d", Point: "p", Value: &pb.Value{Kind: &pb.Value_DoubleValue{DoubleValue: 1.5}}, RequestId: "r"})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeCommand: a command from the hub, in either encoding, decodes into a
// complete request or is refused with errBadCommand, and never panics.
func FuzzDecodeCommand(f *testing.F) {
	f.Add(mustWriteRequest(f), "", false)
	f.Add(mustWriteRequest(f), "2026-01-01T00:00:00Z", false)
	f.Add([]byte(`{"device":"d","point":"p","value":{"intValue":"3"}}`), "", true)
	f.Add([]byte(`{"device":"d","point":"p","value":{}}`), "x", true)
	f.Add([]byte{0x0a, 0x80}, "", false)
	f.Fuzz(func(t *testing.T, data []byte, expires string, json bool) {
		enc := EncodingProtobuf
		if json {
			enc = EncodingJSON
		}
		cmd, err := newCodec(enc).decodeCommand(data, expires)
		if err != nil {
			if !errors.Is(err, errBadCommand) {
				t.Fatalf("error not errBadCommand: %v", err)
			}
			return
		}
		if cmd.req.GetDevice() == "" || cmd.req.GetPoint() == "" || cmd.value.Kind() == bridge.KindNone {
			t.Fatalf("accepted an incomplete command: %v", cmd.req)
		}
		if expires != "" && cmd.expires.IsZero() {
			t.Fatalf("expires %q accepted as none", expires)
		}
	})
}

func TestMessageEncodings(t *testing.T) {
	m := &bridge.Message{Sequence: 9, Device: "d", Point: "p", Value: bridge.String("x"), Priority: bridge.PriorityCritical, Labels: map[string]string{"site": "1"}}
	for _, enc := range []string{EncodingProtobuf, EncodingJSON} {
		b, err := newCodec(enc).appendMessage(nil, m)
		if err != nil {
			t.Fatal(err)
		}
		out := &pb.Message{}
		if enc == EncodingJSON {
			err = protojson.Unmarshal(b, out)
		} else {
			err = proto.Unmarshal(b, out)
		}
		if err != nil || out.GetSequence() != 9 || out.GetValue().GetStringValue() != "x" || out.GetLabels()["site"] != "1" || out.GetPriority() != pb.Priority_PRIORITY_CRITICAL {
			t.Errorf("%s: %v %v", enc, out, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*1e6, 1600*1e6 // ns
	for n := range 10 {
		want := min(lo*float64(int(1)<<n), hi)
		for range 50 {
			d := float64(Backoff(100e6, 1600e6, n))
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %v not in [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
