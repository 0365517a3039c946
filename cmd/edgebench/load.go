package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	pb "github.com/edgegate/edgegate/proto/edgegate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The load: publishers send numbered readings over MQTT; subscribers (gRPC for
// edgegate, MQTT for the peer) count what arrives, what went missing, and how long
// it took.

// payloadSize is the size of every published payload.
const payloadSize = 256

// tsLayout is RFC 3339 with a fixed nine-digit fraction, so every payload of a
// sequence number of the same length has the same layout.
const tsLayout = "2006-01-02T15:04:05.000000000Z07:00"

// encodePayload is a reading the gateway decodes: the sequence number as an integer
// value, the send time as the source time, and a unit that pads it to payloadSize
// bytes. (The gateway refuses unknown keys in a reading object, so the padding has
// to be a field it knows; the unit is carried through to the gRPC message, so both
// brokers deliver the same amount of data.)
func encodePayload(seq uint64, sent time.Time) []byte {
	b := make([]byte, 0, payloadSize)
	b = append(b, `{"value":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"ts":"`...)
	b = sent.UTC().AppendFormat(b, tsLayout)
	b = append(b, `","unit":"`...)
	pad := payloadSize - len(b) - len(`"}`)
	for range pad {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// decodePayload reads back the sequence number and send time, as an MQTT subscriber
// of the peer does. It is not a JSON parser: it reads what encodePayload writes.
func decodePayload(b []byte) (uint64, time.Time, error) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"value":`))
	if !ok {
		return 0, time.Time{}, errors.New("not a benchmark payload")
	}
	num, rest, ok := bytes.Cut(rest, []byte(`,"ts":"`))
	if !ok {
		return 0, time.Time{}, errors.New("no ts")
	}
	seq, err := strconv.ParseUint(string(num), 10, 64)
	if err != nil {
		return 0, time.Time{}, err
	}
	ts, _, ok := bytes.Cut(rest, []byte(`"`))
	if !ok {
		return 0, time.Time{}, errors.New("unterminated ts")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	return seq, t, err
}

// publisherID names publisher i: its MQTT client id and its device.
func publisherID(i int) string { return "bench-p" + strconv.Itoa(i) }

// publisherIndex is the inverse of publisherID.
func publisherIndex(device string) (int, bool) {
	s, ok := strings.CutPrefix(device, "bench-p")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil && i >= 0
}

// tally is what one subscriber received. The receiving goroutine updates it; the
// measurement reads snapshots.
type tally struct {
	received atomic.Uint64
	missing  atomic.Uint64 // sequence numbers skipped: dropped somewhere
	repeated atomic.Uint64 // duplicates or out of order
	bad      atomic.Uint64 // messages that were not the benchmark's

	last []uint64 // per publisher: the last sequence number seen; receiver-owned

	recording atomic.Bool
	mu        sync.Mutex
	latencies []time.Duration // while recording, up to maxSamples
}

// maxSamples bounds the latencies one subscriber records.
const maxSamples = 1 << 20

func newTally(publishers int) *tally { return &tally{last: make([]uint64, publishers)} }

// add counts one message of publisher pub, sent at sent.
func (t *tally) add(pub int, seq uint64, sent time.Time, now time.Time) {
	if pub < 0 || pub >= len(t.last) {
		t.bad.Add(1)
		return
	}
	t.received.Add(1)
	switch last := t.last[pub]; {
	case seq > last+1:
		t.missing.Add(seq - last - 1)
	case seq <= last:
		t.repeated.Add(1)
		return
	}
	t.last[pub] = seq
	if t.recording.Load() {
		t.mu.Lock()
		if len(t.latencies) < maxSamples {
			t.latencies = append(t.latencies, now.Sub(sent))
		}
		t.mu.Unlock()
	}
}

type counts struct{ received, missing uint64 }

func (t *tally) snapshot() counts {
	return counts{received: t.received.Load(), missing: t.missing.Load()}
}

func (t *tally) samples() []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]time.Duration(nil), t.latencies...)
}

// subscriber is one consumer of everything published.
type subscriber interface {
	tally() *tally
	close()
}

// grpcSub is an edgegate Subscribe stream with no filter.
type grpcSub struct {
	t      *tally
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (s *grpcSub) tally() *tally { return s.t }

func (s *grpcSub) close() {
	s.cancel()
	<-s.done
	s.conn.Close()
}

// subscribeGRPC opens a stream and returns once the gateway has registered it
// (the stream's header), so that nothing published afterwards is missed.
func subscribeGRPC(ctx context.Context, addr string, publishers int) (*grpcSub, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := pb.NewGatewayClient(conn).Subscribe(sctx, &pb.SubscribeRequest{})
	if err == nil {
		_, err = stream.Header()
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	s := &grpcSub{t: newTally(publishers), conn: conn, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			m, err := stream.Recv()
			if err != nil {
				if sctx.Err() == nil && !errors.Is(err, io.EOF) {
					s.err = err
				}
				return
			}
			now := time.Now()
			pub, ok := publisherIndex(m.GetDevice())
			if !ok {
				s.t.bad.Add(1)
				continue
			}
			s.t.add(pub, uint64(m.GetValue().GetIntValue()), m.GetSourceTime().AsTime(), now)
		}
	}()
	return s, nil
}

// mqttSub is a paho client subscribed to every publisher's topic.
type mqttSub struct {
	t  *tally
	cl paho.Client
}

func (s *mqttSub) tally() *tally { return s.t }
func (s *mqttSub) close()        { s.cl.Disconnect(100) }

// benchTopics is the filter that matches every publisher's topic.
const benchTopics = "devices/+/v"

func subscribeMQTT(addr, id string, qos byte, publishers int) (*mqttSub, error) {
	s := &mqttSub{t: newTally(publishers)}
	cl, err := connectMQTT(addr, id)
	if err != nil {
		return nil, err
	}
	s.cl = cl
	tok := cl.Subscribe(benchTopics, qos, func(_ paho.Client, m paho.Message) {
		now := time.Now()
		dev := strings.TrimSuffix(strings.TrimPrefix(m.Topic(), "devices/"), "/v")
		pub, ok := publisherIndex(dev)
		seq, sent, err := decodePayload(m.Payload())
		if !ok || err != nil {
			s.t.bad.Add(1)
			return
		}
		s.t.add(pub, seq, sent, now)
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		cl.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s: %v", id, tok.Error())
	}
	return s, nil
}

// connectMQTT opens a paho connection with the settings every benchmark client
// shares: MQTT 3.1.1, clean session, no reconnects (a lost connection is a result).
func connectMQTT(addr, id string) (paho.Client, error) {
	o := paho.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(id).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(60 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetAutoReconnect(false).
		SetOrderMatters(true).
		// Room for bursts between the network reader and the handler.
		SetMessageChannelDepth(1024)
	cl := paho.NewClient(o)
	tok := cl.Connect()
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		cl.Disconnect(0)
		return nil, fmt.Errorf("connect %s to %s: %v", id, addr, tok.Error())
	}
	return cl, nil
}

// publisher sends numbered payloads on devices/bench-p<i>/v.
type publisher struct {
	index int
	cl    paho.Client
	topic string
	qos   byte
	seq   uint64
	acked *atomic.Uint64 // shared: messages acknowledged (QoS 1) or written (QoS 0)
}

// window is how many messages one publisher may have in flight: within the
// gateway's default per-client window (max_inflight 256), so neither broker throttles
// one client on its own terms.
const window = 128

func connectPublishers(addr string, n int, qos byte, acked *atomic.Uint64) ([]*publisher, error) {
	pubs := make([]*publisher, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range pubs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := publisherID(i)
			cl, err := connectMQTT(addr, id)
			if err != nil {
				errs[i] = err
				return
			}
			pubs[i] = &publisher{index: i, cl: cl, topic: "devices/" + id + "/v", qos: qos, acked: acked}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closePublishers(pubs)
		return nil, err
	}
	return pubs, nil
}

func closePublishers(pubs []*publisher) {
	var wg sync.WaitGroup
	for _, p := range pubs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.cl.Disconnect(100)
		}()
	}
	wg.Wait()
}

// run publishes until ctx ends, or until it has sent count messages when count is
// not 0: as fast as a window of that many messages in flight allows when rate is
// 0, else at rate messages a second, paced against the clock so that a late
// wake-up is made up for rather than lost.
func (p *publisher) run(ctx context.Context, rate float64, count uint64, window int) error {
	// A slot is taken before each publish and given back once the message is
	// acknowledged (written, at QoS 0), so at most window are in flight; acks has
	// room for every token a slot allows, so handing one over never blocks.
	slots := make(chan struct{}, window)
	acks := make(chan paho.Token, window)
	ackErr := make(chan error, 1)
	go func() {
		var first error
		for t := range acks {
			switch {
			case !t.WaitTimeout(ackTimeout):
				if first == nil {
					first = fmt.Errorf("no acknowledgement within %v", ackTimeout)
				}
			case t.Error() != nil:
				if first == nil {
					first = t.Error()
				}
			default:
				p.acked.Add(1)
			}
			<-slots
		}
		ackErr <- first
	}()
	more := func() bool { return ctx.Err() == nil && (count == 0 || p.seq < count) }
	send := func() bool {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		p.seq++
		acks <- p.cl.Publish(p.topic, p.qos, false, encodePayload(p.seq, time.Now()))
		return true
	}
	start := time.Now()
	var sent uint64
loop:
	for more() {
		if rate == 0 {
			if !send() {
				break
			}
			continue
		}
		due := uint64(time.Since(start).Seconds() * rate)
		for ; sent < due && more(); sent++ {
			if !send() {
				break loop
			}
		}
		// Wake up for the next message, but not more often than the timer can be
		// trusted; the messages due meanwhile go out together.
		wait := time.Until(start.Add(time.Duration(float64(sent+1) / rate * float64(time.Second))))
		select {
		case <-ctx.Done():
		case <-time.After(max(wait, 200*time.Microsecond)):
		}
	}
	close(acks)
	if err := <-ackErr; err != nil {
		return fmt.Errorf("publisher %d: %w", p.index, err)
	}
	return nil
}

// ackTimeout bounds the wait for one acknowledgement: a broker that takes longer
// has failed the run.
const ackTimeout = 10 * time.Second
