package modbus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/modbus"
	"github.com/edgegate/edgegate/protocols/modbus/sim"
)

// TestReconfigureTouchesOnlyWhatChanged changes one device's poll interval while
// another device, on another connection, goes on polling: its connection is kept
// (no new Connecting state, polls never stop), the changed one restarts, a new device
// starts and a removed one is disconnected.
func TestReconfigureTouchesOnlyWhatChanged(t *testing.T) {
	sa, sb, sc := newSim(t, sim.Options{}), newSim(t, sim.Options{}), newSim(t, sim.Options{})
	temp := pc("temp", "holding", 0, "uint16")
	cfg := testConfig(device("a", sa.Addr(), 1, temp), device("b", sb.Addr(), 1, temp))
	e := start(t, cfg)
	e.polls("a", 2)
	e.polls("b", 2)
	aSince, bSince := e.device("a").StateSince, e.device("b").StateSince

	next := testConfig(device("a", sa.Addr(), 1, temp), device("b", sb.Addr(), 1, temp), device("c", sc.Addr(), 1, temp))
	next.Devices[0].PollInterval = 30 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.a.Reconfigure(ctx, next); err != nil {
		t.Fatal(err)
	}
	e.polls("a", 2)
	e.polls("b", 2)
	e.polls("c", 2)
	if got := e.device("b").StateSince; !got.Equal(bSince) {
		t.Errorf("device b's state changed at %v: its connection was restarted", got)
	}
	if got := e.device("a").StateSince; got.Equal(aSince) {
		t.Error("device a kept its state: its new poll interval was not applied")
	}

	// Remove c; b goes on.
	if err := e.a.Reconfigure(ctx, testConfig(device("a", sa.Addr(), 1, temp), device("b", sb.Addr(), 1, temp))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c disconnected", func() bool { return e.device("c").State == bridge.StateDisconnected })
	e.polls("b", 2)
	if got := e.device("b").StateSince; !got.Equal(bSince) {
		t.Errorf("device b's state changed at %v", got)
	}

	// A section setting needs a new adapter.
	changed := testConfig(device("a", sa.Addr(), 1, temp))
	changed.MaxGap = 2
	if err := e.a.Reconfigure(ctx, changed); !errors.Is(err, protocols.ErrRestartRequired) {
		t.Fatalf("section change: %v, want ErrRestartRequired", err)
	}
	var _ protocols.Reconfigurer = (*modbus.Adapter)(nil)
}

// A reconfiguration the registry refuses (full) leaves every connection polling:
// it used to stop the changed connection first and then fail to declare its new
// device, leaving b with no poller.
func TestReconfigureRefusedByAFullRegistryStopsNothing(t *testing.T) {
	sa, sb := newSim(t, sim.Options{}), newSim(t, sim.Options{})
	temp := pc("temp", "holding", 0, "uint16")
	e := startOnHub(t, testConfig(device("a", sa.Addr(), 1, temp), device("b", sb.Addr(), 1, temp)), testLogger(t), bridge.HubConfig{MaxDevices: 2})
	e.polls("b", 1)
	// c shares b's connection, so b's line would restart with it.
	next := testConfig(device("a", sa.Addr(), 1, temp), device("b", sb.Addr(), 1, temp), device("c", sb.Addr(), 2, temp))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.a.Reconfigure(ctx, next); !errors.Is(err, bridge.ErrTooManyDevices) {
		t.Fatalf("reconfigure = %v, want ErrTooManyDevices", err)
	}
	e.polls("b", 2)
	e.polls("a", 1)
}
