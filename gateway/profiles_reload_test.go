package gateway_test

import (
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgegate/edgegate/internal/gatewaytest"
	"github.com/edgegate/edgegate/internal/testwait"
)

// silentDevice is a TCP listener standing in for one Modbus device: it counts the
// gateway's connections and sees each one closed. It never answers, and the
// config gives requests an hour, so a connection ends only when the gateway
// ends it.
type silentDevice struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  int
	closed int
	wg     sync.WaitGroup
}

func newSilentDevice(t *testing.T) *silentDevice {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &silentDevice{ln: ln}
	var open []net.Conn
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns++
			open = append(open, c)
			d.mu.Unlock()
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				d.mu.Lock()
				d.closed++
				d.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		d.mu.Lock()
		for _, c := range open {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
	})
	return d
}

func (d *silentDevice) counts() (conns, closed int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns, d.closed
}

const profilesReloadConfig = `
gateway: {id: profiles-reload}
grpc: {listen: 127.0.0.1:0}
http: {listen: "off"}
profiles:
  - name: fryer
    protocol: modbus
    unit_id: 1
    poll_interval: 1h
    timeout: 1h
    labels: {model: %s}
    points: [{name: oil_temp, register: holding, address: 0}]
  - name: till
    protocol: modbus
    unit_id: 1
    poll_interval: 1h
    timeout: 1h
    points: [{name: total, register: input, address: 0}]
devices:
  - {id: fryer-1, profile: fryer, address: "tcp://%s"}
  - {id: fryer-2, profile: fryer, address: "tcp://%s"}
  - {id: till-1, profile: till, address: "tcp://%s"}
  - {id: display-1, protocol: modbus, unit_id: 1, poll_interval: 1h, timeout: 1h, address: "tcp://%s",
     points: [{name: on, register: coil, address: 0}]}
`

// TestReloadOfAProfileRestartsItsDevices changes one profile: exactly the
// devices that use it are reconnected, the others keep their connections.
func TestReloadOfAProfileRestartsItsDevices(t *testing.T) {
	devs := []*silentDevice{newSilentDevice(t), newSilentDevice(t), newSilentDevice(t), newSilentDevice(t)}
	cfgText := func(model string) string {
		return fmt.Sprintf(profilesReloadConfig, model, devs[0].ln.Addr(), devs[1].ln.Addr(), devs[2].ln.Addr(), devs[3].ln.Addr())
	}
	g := gatewaytest.StartYAML(t, cfgText("x200"))
	testwait.For(t, 15*time.Second, "every device connected", func() bool {
		for _, d := range devs {
			if c, _ := d.counts(); c != 1 {
				return false
			}
		}
		return true
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := g.Reload(ctx, gatewaytest.Parse(t, cfgText("x201")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res.Reconfigured, []string{"modbus"}) || len(res.Restarted)+len(res.Started)+len(res.Stopped) != 0 {
		t.Errorf("reload = %s, want modbus reconfigured in place", res)
	}
	// The fryers' old connections close and new ones open.
	testwait.For(t, 15*time.Second, "the fryers reconnected", func() bool {
		for _, d := range devs[:2] {
			if c, closed := d.counts(); c != 2 || closed != 1 {
				return false
			}
		}
		return true
	})
	// The reload stopped every line it restarted before it started any (and
	// returned), so a closed till or display connection would have been seen
	// before the fryers' new ones.
	for i, name := range []string{"till-1", "display-1"} {
		if c, closed := devs[2+i].counts(); c != 1 || closed != 0 {
			t.Errorf("%s: %d connections, %d closed; want its one connection untouched", name, c, closed)
		}
	}

	// The same profile again: nothing changes.
	res, err = g.Reload(ctx, gatewaytest.Parse(t, cfgText("x201")))
	if err != nil || !strings.Contains(res.String(), "no change") {
		t.Errorf("reload of the same config = %s, %v", res, err)
	}
}
