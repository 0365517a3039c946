package main

import (
	"bufio"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua"
	"github.com/gopcua/opcua/ua"
)

func parseOPCUA(t *testing.T, args ...string) error {
	t.Helper()
	fs := flag.NewFlagSet("opcua", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o opcuaOptions
	o.flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return o.validate()
}

func TestOPCUAFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string
	}{
		{args: nil},
		{args: []string{"--items", "10000", "--interval", "100ms", "--security", "all", "--restart-every", "30s"}},
		{args: []string{"--listen", "nohost"}, bad: "--listen"},
		{args: []string{"--items", "-1"}, bad: "--items"},
		{args: []string{"--items", "200001"}, bad: "--items"},
		{args: []string{"--interval", "1ms"}, bad: "--interval"},
		{args: []string{"--security", "some"}, bad: "--security"},
		{args: []string{"--cert", "c.pem"}, bad: "--cert and --key"},
		{args: []string{"--restart-every", "10ms"}, bad: "--restart-every"},
		{args: []string{"--duration", "-1s"}, bad: "--duration"},
	} {
		err := parseOPCUA(t, tc.args...)
		switch {
		case tc.bad == "" && err != nil:
			t.Errorf("%q: %v", tc.args, err)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)):
			t.Errorf("%q: %v, want an error about %s", tc.args, err, tc.bad)
		}
	}
}

// TestOPCUASimulator runs the subcommand, reads a changing variable, writes a
// writable one, restarts it with the signal and reads again.
func TestOPCUASimulator(t *testing.T) {
	o := &opcuaOptions{listen: "127.0.0.1:0", items: 3, interval: 20 * time.Millisecond, security: "none", statsEvery: time.Hour}
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	restart := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() {
		done <- runOPCUA(ctx, o, slog.New(slog.DiscardHandler), pw, restart)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drains until the pipe closes
	endpoint := strings.TrimSpace(strings.TrimPrefix(line, "serving "))

	read := func(c *opcua.Client, name string) any {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		defer rcancel()
		dv, err := c.Node(ua.MustParseNodeID("ns=1;s=" + name)).Value(rctx)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		return dv.Value()
	}
	c := dial(t, ctx, endpoint)
	first := read(c, "Sim.V2").(float64)
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for read(c, "Sim.V2").(float64) == first {
		if time.Now().After(deadline) {
			t.Fatal("Sim.V2 does not change")
		}
		<-tick.C
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	res, err := c.Write(wctx, &ua.WriteRequest{NodesToWrite: []*ua.WriteValue{{
		NodeID: ua.MustParseNodeID("ns=1;s=Line1.Setpoint"), AttributeID: ua.AttributeIDValue,
		Value: &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(30.5)},
	}}})
	if err != nil || res.Results[0] != ua.StatusOK {
		t.Fatalf("write: %v %v", err, res)
	}
	restart <- os.Interrupt // any signal on the channel restarts
	c2 := dial(t, ctx, endpoint)
	if v := read(c2, "Line1.Setpoint"); v != 30.5 {
		t.Errorf("setpoint after restart: %v", v)
	}
}

func dial(t *testing.T, ctx context.Context, endpoint string) *opcua.Client {
	t.Helper()
	c, err := opcua.NewClient(endpoint, opcua.AutoReconnect(false), opcua.SecurityMode(ua.MessageSecurityModeNone))
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The restarted server takes a moment to listen again.
	for {
		err = c.Connect(cctx)
		if err == nil || cctx.Err() != nil {
			break
		}
		c, _ = opcua.NewClient(endpoint, opcua.AutoReconnect(false), opcua.SecurityMode(ua.MessageSecurityModeNone))
		select {
		case <-cctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		xctx, xcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer xcancel()
		c.Close(xctx)
	})
	return c
}
