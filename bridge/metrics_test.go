package bridge

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{Retain: 64, QueueSize: 8, SlowPolicy: SlowDropOldest}, reg)
	defer h.Close()
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := metricValue(t, reg, name, labels)
		if !ok {
			t.Fatalf("no series %s%v", name, labels)
		}
		return v
	}
	mqtt, coap := h.Ingest(ProtocolMQTT), h.Ingest(ProtocolCoAP)

	if v := value("edgegate_subscribers", nil); v != 0 {
		t.Errorf("edgegate_subscribers = %v, want 0", v)
	}
	a := subscribe(t, h, SubscribeOptions{})
	b := subscribe(t, h, SubscribeOptions{})
	if v := value("edgegate_subscribers", nil); v != 2 {
		t.Errorf("edgegate_subscribers = %v, want 2", v)
	}
	b.Close()
	if v := value("edgegate_subscribers", nil); v != 1 {
		t.Errorf("edgegate_subscribers after a Close = %v, want 1", v)
	}

	mustPublish(t, mqtt, reading("a", "x", Int(1)), reading("a", "y", Int(1)))
	mustPublish(t, mqtt, reading("a", "x", Int(2)))
	mustPublish(t, coap, reading("b", "x", Int(1)))
	if v := value("edgegate_messages_in_total", map[string]string{"protocol": "mqtt", "device": "a"}); v != 3 {
		t.Errorf("edgegate_messages_in_total{device=a} = %v, want 3", v)
	}
	if v := value("edgegate_messages_in_total", map[string]string{"protocol": "coap", "device": "b"}); v != 1 {
		t.Errorf("edgegate_messages_in_total{device=b} = %v, want 1", v)
	}
	// A refused message is not counted in.
	_ = mqtt.Publish(context.Background(), reading("a", "x", Value{}))
	if v := value("edgegate_messages_in_total", map[string]string{"device": "a"}); v != 3 {
		t.Errorf("edgegate_messages_in_total{device=a} after a refusal = %v, want 3", v)
	}

	// Deliveries are counted by whoever hands the message on.
	for _, m := range collect(t, a, 4) {
		m.Delivered()
	}
	if v := value("edgegate_messages_out_total", map[string]string{"device": "a"}); v != 3 {
		t.Errorf("edgegate_messages_out_total{device=a} = %v, want 3", v)
	}
	(&Message{}).Delivered() // a message that did not come through an Ingest: no-op

	// 20 more: the subscriber is 20 behind, then drops 12 of them.
	for i := range 20 {
		mustPublish(t, mqtt, reading("a", "x", Int(int64(i))))
	}
	if v := value("edgegate_subscriber_queue_depth_max", nil); v != 20 {
		t.Errorf("edgegate_subscriber_queue_depth_max = %v, want 20", v)
	}
	if v := value("edgegate_last_sequence", nil); v != 24 {
		t.Errorf("edgegate_last_sequence = %v, want 24", v)
	}
	if v := value("edgegate_retained_messages", nil); v != 24 {
		t.Errorf("edgegate_retained_messages = %v, want 24", v)
	}
	if v := value("edgegate_subscriber_queue_limit", nil); v != 8 {
		t.Errorf("edgegate_subscriber_queue_limit = %v, want 8", v)
	}
	collect(t, a, 8)
	if v := value("edgegate_subscriber_dropped_total", map[string]string{"policy": "drop_oldest"}); v != 12 {
		t.Errorf("edgegate_subscriber_dropped_total{policy=drop_oldest} = %v, want 12", v)
	}
	if v := value("edgegate_subscriber_queue_depth_max", nil); v != 0 {
		t.Errorf("edgegate_subscriber_queue_depth_max after reading = %v, want 0", v)
	}
}

// A disconnected subscriber is counted once, however often it calls Next again.
func TestMetricsDisconnect(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHub(HubConfig{Retain: 64, QueueSize: 8}, reg)
	defer h.Close()
	s := subscribe(t, h, SubscribeOptions{})
	publishN(t, h.Ingest(ProtocolMQTT), 9)
	for range 3 {
		if _, err := s.Next(context.Background(), nil); !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("Next: %v, want ErrSlowConsumer", err)
		}
	}
	if v, _ := metricValue(t, reg, "edgegate_subscriber_dropped_total", map[string]string{"policy": "disconnect"}); v != 1 {
		t.Errorf("edgegate_subscriber_dropped_total{policy=disconnect} = %v, want 1", v)
	}
}

// Two hubs register on two registries without conflict; a nil registry is fine.
func TestMetricsRegistration(t *testing.T) {
	for range 2 {
		h := NewHub(HubConfig{}, prometheus.NewRegistry())
		h.Close()
	}
	h := NewHub(HubConfig{}, nil)
	defer h.Close()
	mustPublish(t, h.Ingest(ProtocolMQTT), reading("d", "p", Int(1)))
}
