package main

import (
	"context"
	"flag"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mb "github.com/simonvetter/modbus"
)

func parseModbus(t *testing.T, args ...string) (*modbusOptions, error) {
	t.Helper()
	fs := flag.NewFlagSet("modbus", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o modbusOptions
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return &o, o.validate()
}

func TestModbusFlags(t *testing.T) {
	o, err := parseModbus(t, "--point", "holding:0:float32=21.5/walk", "--point", "coil:3=true/toggle",
		"--point", "input:10:string::4=pump-7", "--units", "1,2", "--fill", "3")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.motions) != 2*6 || len(o.unitIDs) != 2 {
		t.Errorf("%d motions, units %v", len(o.motions), o.unitIDs)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--point", "holding:0:float=1"}, `unknown type "float"`},
		{[]string{"--point", "holding:0"}, "no =VALUE"},
		{[]string{"--point", "holding:x=1"}, `address "x" is not a number`},
		{[]string{"--point", "holding:0:int16=70000"}, "out of the range of int16"},
		{[]string{"--point", "holding:0:int16=1/toggle"}, "motion toggle does not suit a int16"},
		{[]string{"--point", "holding:0:int16=1/spin"}, `motion "spin"`},
		{[]string{"--point", "bogus:0=1"}, `"bogus" is not coil`},
		{[]string{"--devices", "0"}, "--devices: 0"},
		{[]string{"--busy", "2"}, "--busy: 2"},
		{[]string{"--units", "300"}, `--units: "300"`},
		{[]string{"--fill", "2000"}, "--fill: 2000"},
		{[]string{"--map", "/nonexistent"}, "--map:"},
	} {
		_, err := parseModbus(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestModbusSimulator runs the simulator and reads it with an independent client
// (simonvetter's): the map file's and flags' values, values that move, and busy
// answers.
func TestModbusSimulator(t *testing.T) {
	dir := t.TempDir()
	mapPath := filepath.Join(dir, "map.yaml")
	if err := os.WriteFile(mapPath, []byte(`points:
  - {register: input, address: 4, type: float32, byte_order: CDAB, value: "-2.5"}
  - {register: holding, address: 20, type: int32, value: "100", move: count}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := parseModbus(t, "--listen", "127.0.0.1:0", "--devices", "2", "--map", mapPath,
		"--point", "holding:0:uint16=42", "--point", "coil:3=true", "--move", "10ms", "--seed", "1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := lineWriter(make(chan string, 16))
	done := make(chan error, 1)
	go func() { done <- runModbus(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), out) }()
	addrs := []string{listening(t, out), listening(t, out)}
	for _, addr := range addrs {
		c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 5 * time.Second, Logger: log.New(io.Discard, "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Open(); err != nil {
			t.Fatal(err)
		}
		if v, err := c.ReadRegister(0, mb.HOLDING_REGISTER); err != nil || v != 42 {
			t.Errorf("%s holding 0 = %d, %v", addr, v, err)
		}
		if v, err := c.ReadCoil(3); err != nil || !v {
			t.Errorf("%s coil 3 = %v, %v", addr, v, err)
		}
		_ = c.SetEncoding(mb.BIG_ENDIAN, mb.LOW_WORD_FIRST)
		if v, err := c.ReadFloat32(4, mb.INPUT_REGISTER); err != nil || v != -2.5 {
			t.Errorf("%s input 4 = %v, %v", addr, v, err)
		}
		_ = c.SetEncoding(mb.BIG_ENDIAN, mb.HIGH_WORD_FIRST)
		first, err := c.ReadUint32(20, mb.HOLDING_REGISTER)
		if err != nil {
			t.Fatal(err)
		}
		for v := first; v == first; {
			if v, err = c.ReadUint32(20, mb.HOLDING_REGISTER); err != nil {
				t.Fatal(err)
			}
			if v < first {
				t.Fatalf("the counter went back: %d after %d", v, first)
			}
			if v > first {
				break
			}
		}
		if _, err := c.ReadRegister(5000, mb.HOLDING_REGISTER); err != mb.ErrIllegalDataAddress {
			t.Errorf("beyond the table: %v", err)
		}
		c.Close()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the simulator did not stop")
	}
}

// lineWriter hands each line written to it to a channel (dropping lines when it is
// full: the tests read the few they expect).
type lineWriter chan string

func (w lineWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case w <- l:
		default:
		}
	}
	return len(p), nil
}

// listening waits for the next "listening on ADDR" line.
func listening(t *testing.T, w lineWriter) string {
	t.Helper()
	re := regexp.MustCompile(`modbus device \d+ listening on (\S+)`)
	timeout := time.After(10 * time.Second)
	for {
		select {
		case l := <-w:
			if m := re.FindStringSubmatch(l); m != nil {
				return m[1]
			}
		case <-timeout:
			t.Fatal("no address printed")
		}
	}
}

func TestModbusSimulatorBusy(t *testing.T) {
	o, err := parseModbus(t, "--listen", "127.0.0.1:0", "--busy", "1", "--duration", "5s")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := lineWriter(make(chan string, 16))
	done := make(chan error, 1)
	go func() { done <- runModbus(ctx, o, slog.New(slog.NewTextHandler(io.Discard, nil)), out) }()
	addr := listening(t, out)
	c, err := mb.NewClient(&mb.ClientConfiguration{URL: "tcp://" + addr, Timeout: 5 * time.Second, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadRegister(0, mb.HOLDING_REGISTER); err != mb.ErrServerDeviceBusy {
		t.Errorf("--busy 1: %v", err)
	}
	c.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
