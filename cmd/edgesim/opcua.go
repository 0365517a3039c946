package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/edgegate/edgegate/protocols/opcua/opcuasim"
	"github.com/edgegate/edgegate/protocols/opcua/uacert"
)

// Bounds of the opcua subcommand's flags.
const (
	maxOPCUAItems  = 200000
	minOPCUATick   = 10 * time.Millisecond
	opcuaItemsName = "Sim.V" // Sim.V1 ... Sim.V<items>: changing doubles
)

type opcuaOptions struct {
	listen       string
	items        int
	interval     time.Duration
	security     string
	cert, key    string
	maxPerCall   uint
	restartEvery time.Duration
	duration     time.Duration
	statsEvery   time.Duration
}

func (o *opcuaOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.listen, "listen", "127.0.0.1:4840", "host:port to serve on (port 0: a free one, printed)")
	fs.IntVar(&o.items, "items", 10, fmt.Sprintf("changing variables ns=1;s=%s1 to %sN, doubles (0 to %d)", opcuaItemsName, opcuaItemsName, maxOPCUAItems))
	fs.DurationVar(&o.interval, "interval", 100*time.Millisecond, "how often every changing variable changes")
	fs.StringVar(&o.security, "security", "all", "endpoints: all (None, and Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss with Sign and SignAndEncrypt) or none (None only)")
	fs.StringVar(&o.cert, "cert", "", "server certificate (PEM or DER); generated when absent")
	fs.StringVar(&o.key, "key", "", "server key (PEM)")
	fs.UintVar(&o.maxPerCall, "max-items-per-call", 0, "advertise and enforce OperationLimits.MaxMonitoredItemsPerCall (0: none)")
	fs.DurationVar(&o.restartEvery, "restart-every", 0, "restart the server this often (0: never); SIGHUP restarts it too")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT or SIGTERM)")
	fs.DurationVar(&o.statsEvery, "stats", 10*time.Second, "log the notifications sent this often")
}

func (o *opcuaOptions) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if _, port, err := net.SplitHostPort(o.listen); err != nil {
		bad("--listen: %q is not host:port", o.listen)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("--listen: bad port %q", port)
	}
	if o.items < 0 || o.items > maxOPCUAItems {
		bad("--items: %d is not between 0 and %d", o.items, maxOPCUAItems)
	}
	if o.interval < minOPCUATick || o.interval > time.Hour {
		bad("--interval: %v is not between %v and 1h", o.interval, minOPCUATick)
	}
	if o.security != "none" && o.security != "all" {
		bad("--security: %q is not none or all", o.security)
	}
	if (o.cert == "") != (o.key == "") {
		bad("--cert and --key go together")
	}
	if o.maxPerCall > math.MaxUint32 {
		bad("--max-items-per-call: too large")
	}
	if o.restartEvery < 0 || (o.restartEvery > 0 && o.restartEvery < time.Second) {
		bad("--restart-every: %v is not 0 or at least 1s", o.restartEvery)
	}
	if o.duration < 0 {
		bad("--duration: %v is negative", o.duration)
	}
	if o.statsEvery <= 0 {
		bad("--stats: %v is not positive", o.statsEvery)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", errUsage, errors.Join(errs...))
	}
	return nil
}

func init() {
	register(command{
		name: "opcua",
		summary: `  edgesim opcua [flags]     an OPC UA server: ns=1;s=Line1.Temperature (changing), Line1.Count
                            (changing), Line1.Setpoint, Line1.Mode, Line1.Running (writable),
                            Sim.V1..N (changing); --restart-every or SIGHUP restarts it
`,
		run: opcuaMain,
	})
}

func opcuaMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o opcuaOptions
	if err := parseOptions("opcua", &o, args, stderr); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return runOPCUA(ctx, &o, log, stdout, hup)
}

// opcuaVars are the simulator's variables.
func opcuaVars(items int) []opcuasim.Var {
	vars := []opcuasim.Var{
		{Name: "Line1.Temperature", Value: 21.5, Change: func(prev any, tick uint64) any {
			return 21.5 + 2*math.Sin(float64(tick)/20)
		}},
		{Name: "Line1.Count", Value: int32(0), Change: func(prev any, _ uint64) any { return prev.(int32) + 1 }},
		{Name: "Line1.Setpoint", Value: 20.0, Writable: true},
		{Name: "Line1.Mode", Value: "auto", Writable: true},
		{Name: "Line1.Running", Value: true, Writable: true},
	}
	for i := 1; i <= items; i++ {
		phase := float64(i)
		vars = append(vars, opcuasim.Var{Name: opcuaItemsName + strconv.Itoa(i), Value: 0.0, Change: func(_ any, tick uint64) any {
			// Every tick a new value, so that every item notifies every tick.
			return phase + float64(tick)
		}})
	}
	return vars
}

// runOPCUA serves until ctx ends or the duration passes; restart (and the
// --restart-every timer) restart the server.
func runOPCUA(ctx context.Context, o *opcuaOptions, log *slog.Logger, stdout io.Writer, restart <-chan os.Signal) error {
	so := opcuasim.Options{
		Address: o.listen, Interval: o.interval, Vars: opcuaVars(o.items),
		MaxMonitoredItemsPerCall: uint32(o.maxPerCall),
	}
	if o.security == "all" {
		so.Security = opcuasim.AllSecurity
	}
	if o.cert != "" {
		der, key, err := uacert.Load(o.cert, o.key)
		if err != nil {
			return err
		}
		so.CertDER, so.Key = der, key
	}
	s, err := opcuasim.New(so)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "serving %s\n", s.Endpoint())
	log.Info("serving", "endpoint", s.Endpoint(), "variables", o.items+5, "interval", o.interval, "security", o.security,
		"certificate_thumbprint", uacert.Thumbprint(s.CertDER()))
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var every <-chan time.Time
	if o.restartEvery > 0 {
		t := time.NewTicker(o.restartEvery)
		defer t.Stop()
		every = t.C
	}
	stats := time.NewTicker(o.statsEvery)
	defer stats.Stop()
	for {
		select {
		case <-ctx.Done():
			_, _, sent := s.Stats()
			log.Info("stopped", "notifications_sent_last_run", sent, "starts", s.Starts())
			return nil
		case <-restart:
		case <-every:
		case <-stats.C:
			subs, items, sent := s.Stats()
			log.Info("stats", "subscriptions", subs, "monitored_items", items, "notifications_sent", sent)
			continue
		}
		log.Info("restarting")
		if err := s.Restart(); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		log.Info("restarted", "endpoint", s.Endpoint(), "starts", s.Starts())
	}
}
