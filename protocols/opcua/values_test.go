package opcua

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/edgegate/edgegate/bridge"
)

func TestQuality(t *testing.T) {
	for st, want := range map[ua.StatusCode]bridge.Quality{
		ua.StatusOK: bridge.QualityGood, ua.StatusGoodClamped: bridge.QualityGood,
		ua.StatusUncertainLastUsableValue: bridge.QualityUncertain, ua.StatusUncertain: bridge.QualityUncertain,
		ua.StatusBadNodeIDUnknown: bridge.QualityBad, ua.StatusBad: bridge.QualityBad, 0xC0000000: bridge.QualityBad,
	} {
		if got := Quality(st); got != want {
			t.Errorf("Quality(%08X) = %v, want %v", uint32(st), got, want)
		}
	}
}

// TestToValue is the documented mapping, one built-in type a row.
func TestToValue(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	cases := []struct {
		in   any
		want bridge.Value
	}{
		{true, bridge.Bool(true)},
		{int8(-1), bridge.Int(-1)},
		{int16(-2), bridge.Int(-2)},
		{int32(-3), bridge.Int(-3)},
		{int64(-4), bridge.Int(-4)},
		{uint8(1), bridge.Uint(1)},
		{uint16(2), bridge.Uint(2)},
		{uint32(3), bridge.Uint(3)},
		{uint64(math.MaxUint64), bridge.Uint(math.MaxUint64)},
		{float32(1.5), bridge.Double(1.5)},
		{2.25, bridge.Double(2.25)},
		{"héllo", bridge.String("héllo")},
		{ts, bridge.String("2026-01-02T03:04:05.000000006Z")},
		{[]byte{1, 2}, bridge.Bytes([]byte{1, 2})},
		{ua.XMLElement("<a/>"), bridge.String("<a/>")},
		{ua.NewStringNodeID(1, "x"), bridge.String("ns=1;s=x")},
		{ua.NewLocalizedText("text"), bridge.String("text")},
		{&ua.QualifiedName{NamespaceIndex: 2, Name: "n"}, bridge.String("2:n")},
		{ua.StatusBadTimeout, bridge.Uint(uint64(ua.StatusBadTimeout))},
		{[]int32{1, 2, 3}, bridge.String("[1,2,3]")},
		{[]float64{1.5, math.NaN()}, bridge.String(`[1.5,"NaN"]`)},
		{[]string{"a", "b"}, bridge.String(`["a","b"]`)},
		{[][]byte{{1}, {2}}, bridge.String(`["AQ==","Ag=="]`)},
		{[]bool{true}, bridge.String("[true]")},
		{[][]int32{{1, 2}, {3, 4}}, bridge.String("[[1,2],[3,4]]")},
	}
	for _, c := range cases {
		v, err := ua.NewVariant(c.in)
		if err != nil {
			t.Fatalf("%T: %v", c.in, err)
		}
		got, err := ToValue(v)
		if err != nil {
			t.Errorf("%T: %v", c.in, err)
			continue
		}
		if !got.Equal(c.want) {
			t.Errorf("%T %v: got %#v, want %#v", c.in, c.in, got, c.want)
		}
	}
	if _, err := ToValue(nil); !errors.Is(err, errNoValue) {
		t.Errorf("nil: %v", err)
	}
	// A structure is a JSON object with its type.
	eo := ua.NewExtensionObject(&ua.Range{Low: 1, High: 2})
	got, err := ToValue(ua.MustVariant(eo))
	if s, _ := got.AsString(); err != nil || s != `{"type":"i=886","value":{"Low":1,"High":2}}` {
		t.Errorf("structure: %q %v", s, err)
	}
}

func TestFromValue(t *testing.T) {
	ok := []struct {
		v    bridge.Value
		t    ua.TypeID
		want any
	}{
		{bridge.Int(42), ua.TypeIDDouble, 42.0},
		{bridge.Double(1.5), ua.TypeIDFloat, float32(1.5)},
		{bridge.Double(7), ua.TypeIDInt16, int16(7)},
		{bridge.Uint(255), ua.TypeIDByte, uint8(255)},
		{bridge.String("12"), ua.TypeIDUint32, uint32(12)},
		{bridge.Int(1), ua.TypeIDBoolean, true},
		{bridge.String("false"), ua.TypeIDBoolean, false},
		{bridge.Int(3), ua.TypeIDString, "3"},
		{bridge.Int(-5), ua.TypeIDInt64, int64(-5)},
	}
	for _, c := range ok {
		v, err := FromValue(c.v, c.t)
		if err != nil {
			t.Errorf("%#v to %v: %v", c.v, c.t, err)
			continue
		}
		if v.Type() != c.t || v.Value() != c.want {
			t.Errorf("%#v to %v: got %v %#v", c.v, c.t, v.Type(), v.Value())
		}
	}
	bad := []struct {
		v bridge.Value
		t ua.TypeID
	}{
		{bridge.Int(128), ua.TypeIDSByte},
		{bridge.Int(-1), ua.TypeIDUint16},
		{bridge.Double(1.5), ua.TypeIDInt32},
		{bridge.Int(2), ua.TypeIDBoolean},
		{bridge.String("x"), ua.TypeIDDouble},
		{bridge.Bool(true), ua.TypeIDDouble},
		{bridge.Double(1e300), ua.TypeIDFloat},
		{bridge.Int(1), ua.TypeIDExtensionObject},
		{bridge.Int(1), ua.TypeIDDateTime},
	}
	for _, c := range bad {
		if _, err := FromValue(c.v, c.t); !errors.Is(err, errConvert) {
			t.Errorf("%#v to %v: %v, want a conversion error", c.v, c.t, err)
		}
	}
}

func TestBuiltinOf(t *testing.T) {
	for nid, want := range map[string]ua.TypeID{"i=11": ua.TypeIDDouble, "i=290": ua.TypeIDDouble, "i=294": ua.TypeIDDateTime, "i=12": ua.TypeIDString, "i=29": ua.TypeIDInt32} {
		if got, ok := builtinOf(ua.MustParseNodeID(nid)); !ok || got != want {
			t.Errorf("%s: %v %v", nid, got, ok)
		}
	}
	if _, ok := builtinOf(ua.MustParseNodeID("ns=2;i=11")); ok {
		t.Error("a type of another namespace is not a built-in type")
	}
}

func TestStatusName(t *testing.T) {
	if got := statusName(ua.StatusBadNodeIDUnknown); got != "BadNodeIdUnknown" {
		t.Errorf("got %q", got)
	}
	if got := statusName(0x80FF0000); got != "0x80FF0000" {
		t.Errorf("got %q", got)
	}
}
