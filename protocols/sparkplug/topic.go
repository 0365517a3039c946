package sparkplug

import (
	"errors"
	"fmt"
	"strings"
)

// Namespace is the first topic level of Sparkplug B.
const Namespace = "spBv1.0"

// MessageType is a Sparkplug topic's message type level.
type MessageType string

// The message types of an edge node's topics.
const (
	NBIRTH MessageType = "NBIRTH"
	NDEATH MessageType = "NDEATH"
	NDATA  MessageType = "NDATA"
	NCMD   MessageType = "NCMD"
	DBIRTH MessageType = "DBIRTH"
	DDEATH MessageType = "DDEATH"
	DDATA  MessageType = "DDATA"
	DCMD   MessageType = "DCMD"
)

// IsDevice reports whether the type is a device's (its topic has a device level).
func (t MessageType) IsDevice() bool {
	switch t {
	case DBIRTH, DDEATH, DDATA, DCMD:
		return true
	}
	return false
}

func (t MessageType) valid() bool {
	switch t {
	case NBIRTH, NDEATH, NDATA, NCMD, DBIRTH, DDEATH, DDATA, DCMD:
		return true
	}
	return false
}

// ErrNotSparkplug is returned by ParseTopic for a topic outside the Sparkplug B
// namespace, and for the namespace's STATE topics, which are a host application's,
// not an edge node's.
var ErrNotSparkplug = errors.New("not a Sparkplug B edge node topic")

// Topic is a parsed edge node topic: spBv1.0/{Group}/{Type}/{EdgeNode}[/{Device}].
type Topic struct {
	Group    string
	Type     MessageType
	EdgeNode string
	Device   string // empty for the node's own types (N*)
}

// ParseTopic parses an edge node topic. It returns an error wrapping ErrNotSparkplug
// for a topic that does not start with spBv1.0/ or is spBv1.0/STATE/..., and another
// error for a topic in the namespace that is malformed: an unknown message type, a
// missing or extra level, an empty one, or a wildcard.
func ParseTopic(topic string) (Topic, error) {
	rest, ok := strings.CutPrefix(topic, Namespace+"/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrNotSparkplug, topic)
	}
	if strings.HasPrefix(rest, "STATE/") {
		return Topic{}, fmt.Errorf("%w: %q is a host application's STATE topic", ErrNotSparkplug, topic)
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 3 {
		return Topic{}, fmt.Errorf("sparkplug: topic %q: want %s/{group}/{type}/{edge_node}[/{device}]", topic, Namespace)
	}
	t := Topic{Group: parts[0], Type: MessageType(parts[1]), EdgeNode: parts[2]}
	if !t.Type.valid() {
		return Topic{}, fmt.Errorf("sparkplug: topic %q: unknown message type %q", topic, parts[1])
	}
	want := 3
	if t.Type.IsDevice() {
		want = 4
	}
	if len(parts) != want {
		return Topic{}, fmt.Errorf("sparkplug: topic %q: %s wants %d levels after %s, has %d", topic, t.Type, want, Namespace, len(parts))
	}
	if want == 4 {
		t.Device = parts[3]
	}
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, "+#") {
			return Topic{}, fmt.Errorf("sparkplug: topic %q: empty level or wildcard", topic)
		}
	}
	return t, nil
}

// String is the topic's MQTT form.
func (t Topic) String() string {
	s := Namespace + "/" + t.Group + "/" + string(t.Type) + "/" + t.EdgeNode
	if t.Device != "" {
		s += "/" + t.Device
	}
	return s
}

// StateTopic is where a host application announces itself (Sparkplug 3.0):
// spBv1.0/STATE/{hostID}, retained, {"online":true|false,"timestamp":<ms>}.
func StateTopic(hostID string) string { return Namespace + "/STATE/" + hostID }
