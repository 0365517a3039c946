package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edgegate/edgegate/config"
	_ "github.com/edgegate/edgegate/protocols/modbus"
)

func TestModbusGatewayConfig(t *testing.T) {
	b := modbusBench{devices: 3, registers: 10, interval: time.Second}
	devs, err := startModbusDevices(b)
	if err != nil {
		t.Fatal(err)
	}
	defer devs.stop()
	text := modbusGatewayConfig(b, devs)
	if _, err := config.Parse([]byte(text)); err != nil {
		t.Fatalf("the gateway refuses the config: %v\n%s", err, text)
	}
	if n := strings.Count(text, "protocol: modbus"); n != 3 {
		t.Errorf("%d devices in the config", n)
	}
}

func TestModbusHistQuantile(t *testing.T) {
	before := map[float64]float64{0.001: 10, 0.01: 10, 0.1: 10, math.Inf(1): 10}
	after := map[float64]float64{0.001: 60, 0.01: 108, 0.1: 110, math.Inf(1): 110}
	if got := modbusHistQuantile(before, after, 0.5); got != "≤ 1.00 ms" {
		t.Errorf("p50 %s", got)
	}
	if got := modbusHistQuantile(before, after, 0.99); got != "≤ 100 ms" {
		t.Errorf("p99 %s", got)
	}
	after[math.Inf(1)] = 200
	if got := modbusHistQuantile(before, after, 0.99); got != "> 100 ms" {
		t.Errorf("p99 beyond the buckets: %s", got)
	}
	if got := modbusHistQuantile(nil, nil, 0.99); got != "n/a" {
		t.Errorf("empty: %s", got)
	}
}
