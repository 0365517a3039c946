package client_test

import (
	"math"
	"testing"

	"github.com/edgegate/edgegate/client"
)

func TestValueAccessors(t *testing.T) {
	type want struct {
		f    float64
		fok  bool
		i    int64
		iok  bool
		u    uint64
		uok  bool
		s    string
		kind client.Kind
	}
	for _, tc := range []struct {
		v client.Value
		w want
	}{
		{client.Double(21.5), want{21.5, true, 0, false, 0, false, "21.5", client.KindDouble}},
		{client.Double(-3), want{-3, true, -3, true, 0, false, "-3", client.KindDouble}},
		{client.Double(math.Inf(1)), want{math.Inf(1), true, 0, false, 0, false, "+Inf", client.KindDouble}},
		{client.Double(1 << 63), want{1 << 63, true, 0, false, 1 << 63, true, "9.223372036854776e+18", client.KindDouble}},
		{client.Int(-7), want{-7, true, -7, true, 0, false, "-7", client.KindInt}},
		{client.Int(7), want{7, true, 7, true, 7, true, "7", client.KindInt}},
		{client.Uint(math.MaxUint64), want{math.MaxUint64, true, 0, false, math.MaxUint64, true, "18446744073709551615", client.KindUint}},
		{client.Bool(true), want{0, false, 0, false, 0, false, "true", client.KindBool}},
		{client.String("hot"), want{0, false, 0, false, 0, false, "hot", client.KindString}},
		{client.Bytes([]byte{1, 2}), want{0, false, 0, false, 0, false, "AQI=", client.KindBytes}},
		{client.Value{}, want{0, false, 0, false, 0, false, "", client.KindNone}},
	} {
		v, w := tc.v, tc.w
		if v.Kind() != w.kind {
			t.Errorf("%v: kind %s, want %s", v, v.Kind(), w.kind)
		}
		if f, ok := v.Float64(); ok != w.fok || f != w.f {
			t.Errorf("%v: Float64 %v %v", v, f, ok)
		}
		if i, ok := v.Int64(); ok != w.iok || i != w.i {
			t.Errorf("%v: Int64 %v %v", v, i, ok)
		}
		if u, ok := v.Uint64(); ok != w.uok || u != w.u {
			t.Errorf("%v: Uint64 %v %v", v, u, ok)
		}
		if s := v.String(); s != w.s {
			t.Errorf("String %q, want %q", s, w.s)
		}
	}
	if b, ok := client.Bool(true).Bool(); !b || !ok {
		t.Error("Bool")
	}
	if _, ok := client.Int(1).Bool(); ok {
		t.Error("an int read as a bool")
	}
	if s, ok := client.String("x").Text(); s != "x" || !ok {
		t.Error("Text")
	}
	if _, ok := client.Int(1).Text(); ok {
		t.Error("an int read as text")
	}
	src := []byte{1}
	v := client.Bytes(src)
	src[0] = 9
	if b, ok := v.BytesValue(); !ok || b[0] != 1 {
		t.Error("Bytes does not copy")
	}
	if !(client.Value{}).IsZero() || client.Int(0).IsZero() {
		t.Error("IsZero")
	}
}
