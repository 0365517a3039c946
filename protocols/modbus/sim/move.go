package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/edgegate/edgegate/bridge"
)

// Motion is how a value moves: every step of Animate changes it.
type Motion struct {
	Unit  uint8
	Point Point
	// Kind is walk (a random walk around where it started), count (up by one),
	// toggle (a bool that flips), sine (a wave between Start-Amplitude and
	// Start+Amplitude over Period) or hold (it stays).
	Kind      string
	Start     bridge.Value
	Amplitude float64       // walk: the step's standard deviation; sine: the amplitude (default 1)
	Period    time.Duration // sine: default one minute
}

// Motion kinds.
const (
	MoveWalk   = "walk"
	MoveCount  = "count"
	MoveToggle = "toggle"
	MoveSine   = "sine"
	MoveHold   = "hold"
)

// Check reports whether m can move on s.
func (s *Server) Check(m Motion) error {
	if _, _, _, err := m.Point.codec(); err != nil {
		return err
	}
	switch m.Kind {
	case MoveWalk, MoveCount, MoveToggle, MoveSine, MoveHold, "":
	default:
		return fmt.Errorf("motion %q is not walk, count, toggle, sine or hold", m.Kind)
	}
	return s.Set(m.Unit, m.Point, m.Start)
}

// Animate sets each motion's start value, then steps them every interval until ctx
// ends. It runs in the caller's goroutine.
func (s *Server) Animate(ctx context.Context, every time.Duration, motions []Motion, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	state := make([]float64, len(motions))
	for i, m := range motions {
		if err := s.Check(m); err != nil {
			return fmt.Errorf("sim: %s %d: %w", m.Point.Register, m.Point.Address, err)
		}
		state[i], _ = m.Start.Float()
	}
	start := time.Now()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			for i, m := range motions {
				v, ok := step(m, &state[i], now.Sub(start), rng)
				if ok {
					// A value out of the point's range stays where it was.
					_ = s.Set(m.Unit, m.Point, v)
				}
			}
		}
	}
}

func step(m Motion, x *float64, since time.Duration, rng *rand.Rand) (bridge.Value, bool) {
	start, _ := m.Start.Float()
	amp := m.Amplitude
	if amp == 0 {
		amp = 1
	}
	switch m.Kind {
	case MoveWalk:
		// Mean-reverting: it wanders but stays near where it started.
		*x += 0.05*(start-*x) + rng.NormFloat64()*amp
	case MoveCount:
		*x++
	case MoveToggle:
		b, _ := m.Start.AsBool()
		if *x == 0 {
			*x = 1
		} else {
			*x = 0
		}
		return bridge.Bool((*x == 1) != b), true
	case MoveSine:
		p := m.Period
		if p == 0 {
			p = time.Minute
		}
		*x = start + amp*math.Sin(2*math.Pi*since.Seconds()/p.Seconds())
	default:
		return bridge.Value{}, false
	}
	return valueLike(m.Start, *x), true
}

// valueLike gives x the kind of v (an integer is rounded; one out of range wraps).
func valueLike(v bridge.Value, x float64) bridge.Value {
	switch v.Kind() {
	case bridge.KindInt:
		return bridge.Int(int64(math.Round(x)))
	case bridge.KindUint:
		if x < 0 {
			x = 0
		}
		return bridge.Uint(uint64(math.Round(x)))
	}
	return bridge.Double(x)
}
