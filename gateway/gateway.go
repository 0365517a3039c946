// Package gateway assembles a running edgegate from a config: the hub, the
// protocol adapters, the gRPC service and the HTTP endpoints. It starts them in
// dependency order and stops them in reverse. It knows protocols only through the
// protocols registry.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"github.com/edgegate/edgegate/northbound"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgegate/edgegate/bridge"
	"github.com/edgegate/edgegate/bridge/journal"
	"github.com/edgegate/edgegate/config"
	"github.com/edgegate/edgegate/functions"
	"github.com/edgegate/edgegate/grpcapi"
	"github.com/edgegate/edgegate/protocols"
	"github.com/edgegate/edgegate/protocols/ratelog"
	etls "github.com/edgegate/edgegate/tls"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
)

// configPollInterval is how often a watched config file is checked for changes.
const configPollInterval = 2 * time.Second

// Version is set at build time with -ldflags "-X github.com/edgegate/edgegate/gateway.Version=...".
var Version = "dev"

// Gateway is one running edgegate.
type Gateway struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	hub     *bridge.Hub
	journal *journal.Journal // nil without a durable log
	uplink  *fleetUplink     // nil without an uplink section (uplink.go)
	// northbound are the MQTT links to external brokers (northbound.go).
	northbound []*northbound.Link
	tls        *etls.Store // every certificate, re-read when its files change (tls.go)
	tunnels    []*etls.Tunnel
	adapters   adapterSet
	// functions run between the adapters and the hub (package functions).
	functions *functions.Pipeline
	// reloadMetrics count config reloads.
	reloadMetrics *reloadMetrics
	started       time.Time

	mu       sync.Mutex
	cfgFile  string // watched for changes when set
	reloadMu sync.Mutex
	hup      chan struct{}
	grpcAddr net.Addr
	httpAddr net.Addr
	ready    atomic.Bool
	readyCh  chan struct{}
}

// New builds a gateway from a validated config. It opens nothing.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	hc := cfg.HubConfig()
	var jr *journal.Journal
	if cfg.Durable() {
		// The journal is the one thing New opens: it must recover before the hub
		// can know its first sequence. Run closes it.
		opts := cfg.JournalOptions()
		opts.Logger = log.With("component", "journal")
		var err error
		if jr, err = journal.Open(filepath.Join(cfg.Gateway.DataDir, "journal"), opts); err != nil {
			return nil, fmt.Errorf("durable log: %w", err)
		}
		hc.Journal = jr
		hc.FirstSequence = jr.NextSequence()
		reg.MustRegister(journalCollector{jr})
	} else {
		// Without a durable log, seed sequences from the clock (microseconds) so
		// that a restart never reuses a sequence a consumer has seen, as long as
		// the gateway averages under a million messages a second.
		hc.FirstSequence = uint64(time.Now().UnixMicro())
	}
	hc.Labels = cfg.Gateway.Labels
	g := &Gateway{
		cfg:     cfg,
		log:     log,
		reg:     reg,
		hub:     bridge.NewHub(hc, reg),
		journal: jr,
		readyCh: make(chan struct{}),
		hup:     make(chan struct{}, 1),
	}
	if err := g.hub.SetReporting(cfg.ReportRules()); err != nil {
		g.closeJournal()
		return nil, fmt.Errorf("reporting: %w", err)
	}
	g.reloadMetrics = newReloadMetrics(reg)
	g.functions = functions.New(cfg.FunctionSet, functions.Options{
		Logger: log.With("component", "functions"), Metrics: reg, Writer: g.hub,
	})
	g.adapters.g = g
	if err := g.newTLS(cfg); err != nil {
		g.closeJournal()
		return nil, err
	}
	names := make([]string, 0, len(cfg.Protocols))
	for n := range cfg.Protocols {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a, err := g.build(n, cfg.Protocols[n])
		if err != nil {
			g.closeJournal()
			return nil, err
		}
		g.adapters.add(a)
		g.route(a.protocol, a)
	}
	if err := g.newUplink(cfg); err != nil {
		g.closeJournal()
		return nil, err
	}
	if err := g.newNorthbound(cfg); err != nil {
		g.closeJournal()
		return nil, err
	}
	return g, nil
}

// WatchConfigFile makes Run reload path when it changes (checked every 2 seconds)
// or when RequestReload is called. Call it before Run.
func (g *Gateway) WatchConfigFile(path string) { g.cfgFile = path }

// config returns the config in force.
func (g *Gateway) config() *config.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

func (g *Gateway) setConfig(c *config.Config) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg = c
}

// Hub is the gateway's hub (for tests and embedding).
func (g *Gateway) Hub() *bridge.Hub { return g.hub }

// Adapter returns a protocol's adapter, or nil.
func (g *Gateway) Adapter(name string) protocols.Adapter {
	if a := g.adapters.get(name); a != nil {
		return a.impl
	}
	return nil
}

// Ready is closed once every listener is bound and every adapter is ready.
func (g *Gateway) Ready() <-chan struct{} { return g.readyCh }

// GRPCAddr and HTTPAddr are the bound addresses, once Ready.
func (g *Gateway) GRPCAddr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.grpcAddr
}

func (g *Gateway) HTTPAddr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.httpAddr
}

// Run serves until ctx ends or a part fails, then stops everything in reverse order
// of start. It returns nil after a stop caused by ctx.
func (g *Gateway) Run(ctx context.Context) error {
	cfg := g.config() // a reload may replace g.cfg while we run
	g.started = time.Now()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// Bind every listener first, so a port in use fails the start at once.
	var httpLn net.Listener
	if cfg.HTTP.Listen != "off" {
		ln, err := listen(cfg.HTTP.Listen)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		httpLn = ln
	}
	grpcRaw, err := listen(cfg.GRPC.Listen)
	if err != nil {
		if httpLn != nil {
			httpLn.Close()
		}
		return fmt.Errorf("grpc: %w", err)
	}
	// Bounded, and idle sockets give their slots to new connections (issue 19.5).
	var grpcLn net.Listener = grpcapi.NewListener(grpcRaw, grpcapi.ListenerOptions{MaxConnections: cfg.GRPC.MaxConnections, Metrics: g.reg})
	if err := g.listenTunnels(); err != nil {
		grpcLn.Close()
		if httpLn != nil {
			httpLn.Close()
		}
		return err
	}
	g.mu.Lock()
	g.grpcAddr = grpcLn.Addr()
	if httpLn != nil {
		g.httpAddr = httpLn.Addr()
	}
	g.mu.Unlock()
	g.warnInsecure(cfg)

	// Certificates are checked for changes until everything else has stopped.
	tlsCtx, tlsStop := context.WithCancel(context.Background())
	var tlsWG sync.WaitGroup
	tlsWG.Add(1)
	go func() {
		defer tlsWG.Done()
		g.tls.Run(tlsCtx)
	}()
	defer func() {
		tlsStop()
		tlsWG.Wait()
	}()

	var wg sync.WaitGroup
	fail := func(what string, err error) {
		if err != nil && ctx.Err() == nil {
			cancel(fmt.Errorf("%s: %w", what, err))
		}
	}

	// HTTP first: liveness answers while the rest starts.
	var httpSrv *http.Server
	if httpLn != nil {
		srv, err := g.httpServer()
		if err != nil {
			grpcLn.Close()
			httpLn.Close()
			g.closeTunnels()
			return err
		}
		httpSrv = srv
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(httpLn, "", "")
			} else {
				err = srv.Serve(httpLn)
			}
			if !errors.Is(err, http.ErrServerClosed) {
				fail("http", err)
			}
		}()
	}

	// The reporting stage's sampler before the adapters and functions whose
	// messages it holds, and stopped after them: when it stops it publishes what it
	// still holds, before the hub closes.
	repCtx, repStop := context.WithCancel(context.WithoutCancel(ctx))
	repDone := make(chan struct{})
	go func() {
		defer close(repDone)
		lim := ratelog.New(1, 5, nil)
		g.hub.RunReporting(repCtx, func(err error) {
			lim.Log(g.log, slog.LevelWarn, "reporting: sampled values not published", "err", err)
		})
	}()

	// Edge functions before the adapters, whose messages pass through them, and
	// stopped after the adapters.
	fnCtx, fnStop := context.WithCancel(context.WithoutCancel(ctx))
	fnDone := make(chan struct{})
	go func() {
		defer close(fnDone)
		if err := g.functions.Run(fnCtx); err != nil {
			fail("functions", err)
		}
	}()

	// Adapters, each with its own context so they stop before the hub closes, and
	// one at a time when a reload says so.
	g.adapters.ctx = context.WithoutCancel(ctx)
	g.adapters.fail = fail
	for _, a := range g.adapters.all() {
		if err := g.adapters.start(a); err != nil {
			fail(a.name, err)
		}
	}
	// The fleet uplink after the hub and the adapters, and stopped before them.
	stopUplink := g.startUplink(fail)
	stopNorthbound := g.startNorthbound(fail)
	// Tunnels after the adapters, and stopped before them.
	stopTunnels := g.serveTunnels(fail)

	if g.cfgFile != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.watchConfig(ctx, g.cfgFile, configPollInterval)
		}()
	}

	// gRPC last: it serves what the others produce.
	grpcSrv, healthSrv, err := g.grpcServer()
	if err != nil {
		fail("grpc", err)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fail("grpc", grpcSrv.Serve(grpcLn))
		}()
	}

	// Ready when every adapter that can say so is ready.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, a := range g.adapters.all() {
			r, ok := a.impl.(protocols.Readier)
			if !ok {
				continue
			}
			select {
			case <-r.Ready():
			case <-ctx.Done():
				return
			}
		}
		if healthSrv != nil {
			healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			healthSrv.SetServingStatus("edgegate.v1.Gateway", healthpb.HealthCheckResponse_SERVING)
		}
		g.ready.Store(true)
		close(g.readyCh)
		g.log.Info("edgegate ready", "id", cfg.Gateway.ID, "grpc", g.GRPCAddr().String(), "http", addrString(g.HTTPAddr()), "version", Version)
	}()

	<-ctx.Done()
	cause := context.Cause(ctx)
	if errors.Is(cause, context.Canceled) {
		cause = nil
	}
	if cause != nil {
		g.log.Error("stopping after a failure", "err", cause)
	} else {
		g.log.Info("stopping")
	}

	// Stop in reverse: not ready, adapters, hub (which ends the streams), gRPC, HTTP.
	g.ready.Store(false)
	if healthSrv != nil {
		healthSrv.Shutdown()
	}
	// shutdown_timeout bounds the whole stop, so that it fits a pod's grace period:
	// each stage gets what the earlier ones left.
	end := time.Now().Add(cfg.Gateway.ShutdownTimeout)
	left := func() time.Duration { return max(time.Until(end), 0) }
	stopTunnels()
	stopNorthbound()
	stopUplink()
	if !g.adapters.stopAll(left()) {
		g.log.Error("adapters did not stop in time", "timeout", cfg.Gateway.ShutdownTimeout)
	}
	fnStop()
	select {
	case <-fnDone:
	case <-time.After(left()):
		g.log.Error("edge functions did not stop in time", "timeout", cfg.Gateway.ShutdownTimeout)
	}
	repStop()
	select {
	case <-repDone:
	case <-time.After(left()):
		g.log.Error("the reporting stage did not stop in time", "timeout", cfg.Gateway.ShutdownTimeout)
	}
	g.hub.Close()
	g.closeJournal()
	if grpcSrv != nil {
		stopped := make(chan struct{})
		go func() {
			grpcSrv.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(left()):
			g.log.Warn("grpc graceful stop timed out; closing connections", "timeout", cfg.Gateway.ShutdownTimeout)
			grpcSrv.Stop()
			<-stopped
		}
	} else {
		grpcLn.Close()
	}
	if httpSrv != nil {
		sctx, scancel := context.WithTimeout(context.Background(), left())
		if err := httpSrv.Shutdown(sctx); err != nil {
			httpSrv.Close()
		}
		scancel()
	}
	wg.Wait()
	if strings.HasPrefix(cfg.GRPC.Listen, "unix://") {
		os.Remove(strings.TrimPrefix(cfg.GRPC.Listen, "unix://"))
	}
	return cause
}

func (g *Gateway) grpcServer() (*grpc.Server, *health.Server, error) {
	ic := grpcapi.NewInterceptors(g.log.With("component", "grpc"), g.reg)
	creds, az, err := g.grpcSecurity(g.config())
	if err != nil {
		return nil, nil, err
	}
	opts := []grpc.ServerOption{
		// Logged and counted first, so that refusals show; then authenticated and
		// authorized (tls.go).
		grpc.ChainUnaryInterceptor(ic.Unary, az.Unary),
		grpc.ChainStreamInterceptor(ic.Stream, az.Stream),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			// Ping an idle connection after 30s, and drop it when the ping is not
			// answered in 10s: a workload that vanished (pod deleted, link cut)
			// frees its subscription within a minute.
			Time:    30 * time.Second,
			Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			// Clients may ping every 10s, even with no stream open, so that a
			// client library can notice a dead gateway quickly.
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Requests are small; this bounds what one bad client can make us buffer.
		grpc.MaxRecvMsgSize(4 << 20),
		// Bound concurrent streams per connection: subscribers are bounded
		// service-wide as well.
		grpc.MaxConcurrentStreams(1024),
		// A socket that has not finished TLS and sent the HTTP/2 preface by then is
		// closed (grpc-go's default is 120s; grpcapi.Listener counts it).
		grpcapi.HandshakeTimeout(g.config().GRPC.HandshakeTimeout),
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	srv := grpc.NewServer(opts...)
	apiOpts := grpcapi.Options{
		MaxSubscribers:   g.config().GRPC.MaxSubscribers,
		Logger:           g.log,
		Metrics:          g.reg,
		SubscriberBudget: grpcapi.Budget(g.config().GRPC.SubscriberBudget),
		GatewayBudget:    grpcapi.Budget(g.config().GRPC.Budget),
		ConsumerTTL:      g.config().GRPC.ConsumerTTL,
	}
	if g.journal != nil {
		apiOpts.Consumers = g.journal
	}
	grpcapi.New(g.hub, apiOpts).Register(srv)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus("edgegate.v1.Gateway", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs, nil
}

// listen binds host:port or unix:///path.
func listen(addr string) (net.Listener, error) {
	var ln net.Listener
	var err error
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		// A socket file left by a killed process would make the bind fail.
		if fi, serr := os.Stat(path); serr == nil && fi.Mode()&os.ModeSocket != 0 {
			os.Remove(path)
		}
		ln, err = net.Listen("unix", path)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	return ln, err
}

// closeJournal flushes and closes the durable log, once.
func (g *Gateway) closeJournal() {
	if g.journal == nil {
		return
	}
	if err := g.journal.Close(); err != nil {
		g.log.Error("closing the durable log", "err", err)
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}
