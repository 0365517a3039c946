package northbound

import (
	"context"
	"errors"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/edgegate/edgegate/protocols/payload"
)

// commandQueue bounds the commands received and not yet run; beyond it a
// command is refused (logged and counted), never waited for: paho's reader
// must not block.
const commandQueue = 64

// commandTimeout bounds one command's write to its device.
const commandTimeout = 5 * time.Second

// commands runs the commands of the json format, one at a time in the order
// they arrived, until ctx ends. A command is a publish on {topic}/set whose
// payload is what a device may publish for one point (a bare number, true or
// false, a string, or {"value": ...}); it becomes a write of that point
// through grpcapi.Write, the Write RPC's checks and path. The broker's delivery
// is acknowledged on receipt: a command runs at most once.
func (l *Link) commands(ctx context.Context, in <-chan mqtt.Message, sp *spNode) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-in:
			if sp != nil {
				l.spWrite(ctx, msg.Topic(), msg.Payload(), sp)
			} else {
				l.command(ctx, msg.Topic(), msg.Payload())
			}
		}
	}
}

// command runs one command.
func (l *Link) command(ctx context.Context, topic string, raw []byte) {
	device, point, ok := l.topic.parseCommand(topic)
	if !ok {
		l.refuse(topic, "topic", errors.New("does not fit the topic template"))
		return
	}
	r, err := payload.Decoder{}.Decode(raw)
	if err != nil {
		l.refuse(topic, "payload", err)
		return
	}
	l.write(ctx, topic, device, point, r.Value)
}

// refuse counts and logs a command that is not run.
func (l *Link) refuse(topic, why string, err error) {
	l.m.commands.WithLabelValues(l.cfg.Name, "refused").Inc()
	l.log.Warn("northbound: command refused", "name", l.cfg.Name, "topic", fmt.Sprintf("%.256s", topic), "why", why, "err", err)
}
