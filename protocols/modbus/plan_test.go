package modbus

import (
	"fmt"
	"testing"
)

func pt(kind registerKind, addr uint16, typ Type) *point {
	n := typ.Registers()
	if kind.bits() {
		n = 1
	}
	return &point{name: fmt.Sprintf("%s%d", kind, addr), kind: kind, addr: addr, typ: typ, regs: n}
}

func describe(bs []*block) string {
	s := ""
	for _, b := range bs {
		s += fmt.Sprintf("[%s %d+%d:%d]", b.kind, b.start, b.count, len(b.points))
	}
	return s
}

func TestPlanBlocks(t *testing.T) {
	for _, c := range []struct {
		name   string
		points []*point
		gap    int
		maxReg int
		want   string
	}{
		{"contiguous and near", []*point{pt(kindHolding, 10, TypeUint16), pt(kindHolding, 0, TypeFloat32), pt(kindHolding, 2, TypeUint16)}, 8, 125,
			"[holding 0+11:3]"},
		{"gap too wide", []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 10, TypeUint16)}, 8, 125,
			"[holding 0+1:1][holding 10+1:1]"},
		{"gap 0 joins only neighbours", []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 1, TypeUint16), pt(kindHolding, 3, TypeUint16)}, 0, 125,
			"[holding 0+2:2][holding 3+1:1]"},
		{"tables apart", []*point{pt(kindInput, 0, TypeUint16), pt(kindHolding, 0, TypeUint16), pt(kindCoil, 0, TypeBool), pt(kindDiscreteInput, 0, TypeBool)}, 8, 125,
			"[coil 0+1:1][discrete_input 0+1:1][input 0+1:1][holding 0+1:1]"},
		{"125 registers fit one request", []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 124, TypeUint16)}, 125, 125,
			"[holding 0+125:2]"},
		{"126 do not", []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 124, TypeFloat32)}, 125, 125,
			"[holding 0+1:1][holding 124+2:1]"},
		{"a device's own limit", []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 1, TypeUint16), pt(kindHolding, 2, TypeUint16)}, 8, 2,
			"[holding 0+2:2][holding 2+1:1]"},
		{"overlapping points", []*point{pt(kindHolding, 0, TypeFloat64), pt(kindHolding, 1, TypeUint16)}, 0, 125,
			"[holding 0+4:2]"},
		{"coils within the bit gap", []*point{pt(kindCoil, 0, TypeBool), pt(kindCoil, 60, TypeBool), pt(kindCoil, 200, TypeBool)}, 8, 125,
			"[coil 0+61:2][coil 200+1:1]"},
	} {
		got := describe(planBlocks(c.points, c.gap, 64, c.maxReg, MaxReadBits))
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// 2000 coils in one request, not 2001.
	var coils []*point
	for a := range 2001 {
		coils = append(coils, pt(kindCoil, uint16(a), TypeBool))
	}
	if got := describe(planBlocks(coils, 0, 0, 125, MaxReadBits)); got != "[coil 0+2000:2000][coil 2000+1:1]" {
		t.Errorf("2001 coils: %s", got)
	}
	// Points read alone are planned alone; points split once join only without a gap.
	ps := []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 1, TypeUint16), pt(kindHolding, 2, TypeUint16)}
	ps[1].split = splitAlone
	if got := describe(planBlocks(ps, 8, 64, 125, MaxReadBits)); got != "[holding 0+1:1][holding 1+1:1][holding 2+1:1]" {
		t.Errorf("alone: %s", got)
	}
	ps = []*point{pt(kindHolding, 0, TypeUint16), pt(kindHolding, 1, TypeUint16), pt(kindHolding, 3, TypeUint16),
		pt(kindHolding, 4, TypeUint16), pt(kindHolding, 6, TypeUint16)}
	for _, p := range ps[:4] {
		p.split = splitContiguous
	}
	if got := describe(planBlocks(ps, 8, 64, 125, MaxReadBits)); got != "[holding 0+2:2][holding 3+2:2][holding 6+1:1]" {
		t.Errorf("contiguous: %s", got)
	}
	// Every block's request reads what the block covers.
	for _, b := range planBlocks([]*point{pt(kindInput, 7, TypeInt32)}, 8, 64, 125, MaxReadBits) {
		if string(b.req.pdu) != string([]byte{fcReadInputRegisters, 0, 7, 0, 2}) {
			t.Errorf("request %x", b.req.pdu)
		}
	}
}
