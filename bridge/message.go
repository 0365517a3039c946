// Package bridge is the core of the gateway: the message model, the hub that orders
// every message and fans it out to subscribers, the last-value cache, the device
// registry, and the reporting stage in front of the hub (report by exception,
// deadbands and sampling; report.go).
//
// The bridge knows nothing of device protocols: adapters hand it messages through an
// Ingest, and it never imports a protocol package. It does not speak gRPC either; the
// grpcapi package turns its messages into the wire form.
package bridge

import (
	"time"
)

// Protocol says which kind of adapter a message or device came from. The numbers are
// those of edgegate.v1.Protocol, so a conversion is a cast.
type Protocol int32

const (
	ProtocolUnspecified Protocol = 0
	ProtocolMQTT        Protocol = 1
	ProtocolCoAP        Protocol = 2
	ProtocolOPCUA       Protocol = 3
	ProtocolModbus      Protocol = 4
)

var protocolNames = map[Protocol]string{
	ProtocolMQTT: "mqtt", ProtocolCoAP: "coap", ProtocolOPCUA: "opcua", ProtocolModbus: "modbus",
}

// String returns the protocol's config name ("mqtt", "coap", "opcua", "modbus").
func (p Protocol) String() string {
	if s, ok := protocolNames[p]; ok {
		return s
	}
	return "unspecified"
}

// ParseProtocol is the inverse of Protocol.String.
func ParseProtocol(s string) (Protocol, bool) {
	for p, name := range protocolNames {
		if name == s {
			return p, true
		}
	}
	return ProtocolUnspecified, false
}

// Quality says how far a value can be trusted. Numbers as in edgegate.v1.Quality.
type Quality int32

const (
	QualityUnspecified Quality = 0
	QualityGood        Quality = 1
	QualityUncertain   Quality = 2
	QualityBad         Quality = 3
)

// Priority orders messages when bandwidth is short; higher goes first. Numbers as in
// edgegate.v1.Priority.
type Priority int32

const (
	PriorityUnspecified Priority = 0
	PriorityLow         Priority = 1
	PriorityNormal      Priority = 2
	PriorityHigh        Priority = 3
	PriorityCritical    Priority = 4
)

var priorityNames = map[Priority]string{
	PriorityLow: "low", PriorityNormal: "normal", PriorityHigh: "high", PriorityCritical: "critical",
}

func (p Priority) String() string {
	if s, ok := priorityNames[p]; ok {
		return s
	}
	return "unspecified"
}

// ParsePriority reads a config priority name; the empty string is normal.
func ParsePriority(s string) (Priority, bool) {
	if s == "" {
		return PriorityNormal, true
	}
	for p, name := range priorityNames {
		if name == s {
			return p, true
		}
	}
	return PriorityUnspecified, false
}

// DeviceState is a device's connection state. Numbers as in edgegate.v1.DeviceState.
type DeviceState int32

const (
	StateUnspecified  DeviceState = 0
	StateConnected    DeviceState = 1
	StateDisconnected DeviceState = 2
	StateError        DeviceState = 3
	StateConnecting   DeviceState = 4
)

func (s DeviceState) String() string {
	switch s {
	case StateConnected:
		return "connected"
	case StateDisconnected:
		return "disconnected"
	case StateError:
		return "error"
	case StateConnecting:
		return "connecting"
	}
	return "unspecified"
}

// Message is one reading of one point of one device, normalized.
//
// A Message is immutable once published: the hub shares one pointer among every
// subscriber and the cache, so nobody may change it (or its Labels map) afterwards.
type Message struct {
	Sequence    uint64 // assigned by the hub
	Device      string
	Point       string
	Protocol    Protocol // stamped by the Ingest
	Value       Value
	Quality     Quality   // zero becomes QualityGood
	SourceTime  time.Time // zero when the device gives none
	GatewayTime time.Time // assigned by the hub
	Unit        string
	Labels      map[string]string
	Priority    Priority // zero becomes PriorityNormal

	dev *device // set by Ingest: the device's counters, without a lookup per delivery
}

// Delivered counts one delivery of the message to a subscriber, in
// edgegate_messages_out_total.
func (m *Message) Delivered() {
	if m.dev != nil {
		m.dev.out.Inc()
	}
}
