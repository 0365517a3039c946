package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/edgegate/edgegate/config"
)

// manyModbusDevices is a config of n Modbus devices of two points each, eight to a
// TCP address, as a large plant's tag list would give.
func manyModbusDevices(n int) []byte {
	var b strings.Builder
	b.WriteString("gateway: {id: bench, max_devices: 1000000}\ndevices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - id: plc-%d\n    protocol: modbus\n    address: tcp://127.0.0.1:%d\n    unit_id: %d\n    points:\n",
			i, 1024+i/8, 1+i%8)
		b.WriteString("      - {name: temperature, register: holding, address: 0, type: float32}\n")
		b.WriteString("      - {name: alarm, register: coil, address: 0}\n")
	}
	return []byte(b.String())
}

// BenchmarkParse10000Devices is what `edgegate check` and every reload cost for a
// large config: go test -run '^$' -bench Parse -benchtime 3x ./config/
func BenchmarkParse10000Devices(b *testing.B) {
	src := manyModbusDevices(10000)
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := config.Parse(src)
		if err != nil {
			b.Fatal(err)
		}
		c.FunctionSet.Close()
	}
}
