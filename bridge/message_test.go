package bridge

import "testing"

func TestProtocolNames(t *testing.T) {
	for _, p := range []Protocol{ProtocolMQTT, ProtocolCoAP, ProtocolOPCUA, ProtocolModbus} {
		got, ok := ParseProtocol(p.String())
		if !ok || got != p {
			t.Errorf("ParseProtocol(%q) = %v, %v; want %v", p.String(), got, ok, p)
		}
	}
	want := map[Protocol]string{ProtocolMQTT: "mqtt", ProtocolCoAP: "coap", ProtocolOPCUA: "opcua",
		ProtocolModbus: "modbus", ProtocolUnspecified: "unspecified", Protocol(17): "unspecified"}
	for p, s := range want {
		if got := p.String(); got != s {
			t.Errorf("Protocol(%d).String() = %q, want %q", p, got, s)
		}
	}
	for _, s := range []string{"", "unspecified", "MQTT", "http"} {
		if p, ok := ParseProtocol(s); ok {
			t.Errorf("ParseProtocol(%q) = %v, want an error", s, p)
		}
	}
}

func TestPriorityNames(t *testing.T) {
	tests := []struct {
		in   string
		want Priority
		ok   bool
	}{
		{"", PriorityNormal, true},
		{"low", PriorityLow, true},
		{"normal", PriorityNormal, true},
		{"high", PriorityHigh, true},
		{"critical", PriorityCritical, true},
		{"urgent", PriorityUnspecified, false},
		{"High", PriorityUnspecified, false},
	}
	for _, tt := range tests {
		got, ok := ParsePriority(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParsePriority(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if tt.ok && tt.in != "" && got.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
	if s := PriorityUnspecified.String(); s != "unspecified" {
		t.Errorf("PriorityUnspecified.String() = %q", s)
	}
}

func TestDeviceStateNames(t *testing.T) {
	want := map[DeviceState]string{StateUnspecified: "unspecified", StateConnected: "connected",
		StateDisconnected: "disconnected", StateError: "error", StateConnecting: "connecting", DeviceState(9): "unspecified"}
	for s, name := range want {
		if got := s.String(); got != name {
			t.Errorf("DeviceState(%d).String() = %q, want %q", s, got, name)
		}
	}
}

func TestSlowPolicyNames(t *testing.T) {
	tests := []struct {
		in   string
		want SlowPolicy
		ok   bool
	}{
		{"", SlowDisconnect, true},
		{"disconnect", SlowDisconnect, true},
		{"drop_oldest", SlowDropOldest, true},
		{"drop-oldest", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseSlowPolicy(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseSlowPolicy(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if SlowDisconnect.String() != "disconnect" || SlowDropOldest.String() != "drop_oldest" {
		t.Errorf("SlowPolicy names: %q %q", SlowDisconnect, SlowDropOldest)
	}
}
