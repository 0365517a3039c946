package grpcapi

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/pbconv"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"github.com/edgegate/edgegate/protocols/payload"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Issue 19.10: a NaN rate compared false with the cap and bypassed
// grpc.subscriber_budget. Every float of a request is checked.
func TestBudgetRatesMustBeFinite(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{SubscriberBudget: Budget{MessagesPerSecond: 10}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish(t, f.hub.Ingest(bridge.ProtocolMQTT), "fryer-1", "oil_temp", bridge.Double(1), nil)
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1} {
		for _, b := range []*pb.Budget{{MessagesPerSecond: v}, {BytesPerSecond: v}} {
			s, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Budget: b, Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
			if err != nil {
				t.Fatal(err)
			}
			// Before the fix the NaN stream opened and delivered the message.
			m, err := s.Recv()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "budget.") {
				t.Errorf("budget %v: Recv = %v, %v; want INVALID_ARGUMENT naming the field", b, m, err)
			}
		}
	}
}

// adapterLikeWriter refuses names as the MQTT adapter does: with a plain error,
// which the service used to report as UNAVAILABLE (retryable).
type adapterLikeWriter struct{ recordingWriter }

func (w *adapterLikeWriter) Write(ctx context.Context, device, point string, v bridge.Value) error {
	if err := payload.ValidName(point); err != nil {
		return err
	}
	return w.recordingWriter.Write(ctx, device, point, v)
}

// Issue 19.13: a Write to a point name no device can have is INVALID_ARGUMENT,
// not UNAVAILABLE; so is a value no device can be set to, and a bad Read. (A name
// that is not UTF-8 cannot be sent: protobuf refuses it on both sides.)
func TestWriteAndReadArgumentCodes(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := &adapterLikeWriter{}
	f.hub.SetWriter(bridge.ProtocolMQTT, w)
	publish(t, f.hub.Ingest(bridge.ProtocolMQTT), "pump", "speed", bridge.Int(1), nil)
	one := pbconv.ValueToProto(bridge.Int(1))
	long := strings.Repeat("p", bridge.MaxNameLen+1)
	for _, c := range []struct {
		name string
		req  *pb.WriteRequest
	}{
		{"empty point", &pb.WriteRequest{Device: "pump", Value: one}},
		{"long point", &pb.WriteRequest{Device: "pump", Point: long, Value: one}},
		{"long device", &pb.WriteRequest{Device: long, Point: "speed", Value: one}},
		{"no value", &pb.WriteRequest{Device: "pump", Point: "speed"}},
		{"NaN", &pb.WriteRequest{Device: "pump", Point: "speed", Value: pbconv.ValueToProto(bridge.Double(math.NaN()))}},
		{"Inf", &pb.WriteRequest{Device: "pump", Point: "speed", Value: pbconv.ValueToProto(bridge.Double(math.Inf(1)))}},
	} {
		if _, err := f.client.Write(ctx, c.req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Write with %s = %v, want INVALID_ARGUMENT", c.name, err)
		}
	}
	if len(w.writes) != 0 {
		t.Errorf("the adapter was asked to write %v", w.writes)
	}
	for _, ref := range []*pb.PointRef{{Device: "pump"}, {Device: "pump", Point: long}} {
		for _, src := range []pb.ReadSource{pb.ReadSource_READ_SOURCE_CACHE, pb.ReadSource_READ_SOURCE_DEVICE} {
			if _, err := f.client.Read(ctx, &pb.ReadRequest{Points: []*pb.PointRef{ref}, Source: src}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("Read %q/%q from %v = %v, want INVALID_ARGUMENT", ref.Device, ref.Point, src, err)
			}
		}
	}
}

// Issue 19.7: a Subscribe (or ListDevices) filter larger than the bounds is
// INVALID_ARGUMENT, with the limit in the message.
func TestFilterBoundsAreInvalidArgument(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	publish(t, f.hub.Ingest(bridge.ProtocolMQTT), "fryer-1", "oil_temp", bridge.Double(1), nil)
	many := make([]string, bridge.MaxFilterPatterns+1)
	for i := range many {
		many[i] = "fryer-*" + strings.Repeat("?", i%8)
	}
	long := []string{strings.Repeat("*", bridge.MaxPatternLen+1)}
	for name, req := range map[string]*pb.SubscribeRequest{
		"devices": {Devices: many}, "points": {Points: many}, "long device glob": {Devices: long}, "long point glob": {Points: long},
	} {
		req.Start = &pb.SubscribeRequest_FromEarliest{FromEarliest: true}
		s, err := f.client.Subscribe(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limit") {
			t.Errorf("Subscribe with too many %s: Recv = %v, %v; want INVALID_ARGUMENT naming the limit", name, m, err)
		}
	}
	if _, err := f.client.ListDevices(ctx, &pb.ListDevicesRequest{Devices: many}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ListDevices = %v, want INVALID_ARGUMENT", err)
	}
	// At the bounds, the stream works.
	s, err := f.client.Subscribe(ctx, &pb.SubscribeRequest{Devices: many[:bridge.MaxFilterPatterns], Start: &pb.SubscribeRequest_FromEarliest{FromEarliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetDevice() != "fryer-1" {
		t.Errorf("at the bounds: %v, %v", m, err)
	}
}

// Issue 19.9: a Read of every point answers a bounded page and a token for the
// next; following the tokens returns every point once, ordered.
func TestReadAllIsPaged(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	const devices, points = 25, 100 // 2,500 points: two full default pages and a half
	for d := range devices {
		for p := range points {
			publish(t, in, fmt.Sprintf("dev-%02d", d), fmt.Sprintf("p-%03d", p), bridge.Int(int64(p)), nil)
		}
	}
	// An old client: the first page, bounded.
	first, err := f.client.Read(ctx, &pb.ReadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetMessages()) != DefaultReadPageSize || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %d messages, token %q; want %d and a token", len(first.GetMessages()), first.GetNextPageToken(), DefaultReadPageSize)
	}
	for _, size := range []int32{0, 7, 2500, 1 << 20} {
		var got []string
		req := &pb.ReadRequest{PageSize: size}
		for pages := 0; ; pages++ {
			if pages > devices*points {
				t.Fatalf("page size %d: the tokens do not end", size)
			}
			resp, err := f.client.Read(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if want := int(size); size > 0 && len(resp.GetMessages()) > min(want, maxReadPoints) {
				t.Fatalf("page size %d: a page of %d", size, len(resp.GetMessages()))
			}
			for _, m := range resp.GetMessages() {
				got = append(got, m.GetDevice()+"/"+m.GetPoint())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(got) != devices*points || !slices.IsSorted(got) || len(slices.Compact(slices.Clone(got))) != len(got) {
			t.Errorf("page size %d: %d points (want %d), sorted %v", size, len(got), devices*points, slices.IsSorted(got))
		}
	}
	for _, req := range []*pb.ReadRequest{{PageSize: -1}, {PageToken: "garbage!"}, {PageToken: "AQ"}} {
		if _, err := f.client.Read(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Read(%v) = %v, want INVALID_ARGUMENT", req, err)
		}
	}
}

// A page is also bounded in bytes, so that a client's default 4 MiB limit holds
// whatever the names and labels.
func TestReadPageBytesBound(t *testing.T) {
	f := start(t, bridge.HubConfig{}, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := f.hub.Ingest(bridge.ProtocolMQTT)
	const n = 3000
	long := strings.Repeat("x", 240)
	labels := map[string]string{"note": strings.Repeat("y", 1000)}
	for i := range n {
		publish(t, in, fmt.Sprintf("%s-%04d", long, i), long, bridge.Int(int64(i)), labels)
	}
	req := &pb.ReadRequest{PageSize: maxReadPoints}
	got, pages := 0, 0
	for ; ; pages++ {
		resp, err := f.client.Read(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if size := proto.Size(resp); size > maxReadPageBytes {
			t.Fatalf("a page of %d bytes", size)
		}
		got += len(resp.GetMessages())
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	if got != n || pages < 2 {
		t.Errorf("%d points in %d pages", got, pages+1)
	}
}
